"""A data file's manifest: `NAME.manifest.json` beside it, saying what selected its rows.

`oncology-cases export` writes one beside the confirmed cases it exports (the query, the rows per
class, the file's SHA-256); reading the file for training checks it against the manifest and keeps
it, so that the model's metadata names the data it learned from. Light (no pandas): the service's
image writes manifests without the training libraries.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SUFFIX = ".manifest.json"


def manifest_path(path: Path) -> Path:
    """Where the manifest of data file `path` is."""
    return path.with_name(path.name + SUFFIX)


def is_manifest(path: Path) -> bool:
    return path.name.endswith(SUFFIX)


def checked_manifest(path: Path, sha256: str) -> dict[str, Any] | None:
    """The manifest beside `path` when there is one, after checking that it describes the file
    (its SHA-256 is `sha256`); ValueError naming both files otherwise."""
    beside = manifest_path(path)
    if not beside.is_file():
        return None
    try:
        manifest: object = json.loads(beside.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{beside}: cannot be read as a manifest: {exc}") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{beside}: a manifest is a JSON object")
    stated = manifest.get("sha256")
    if stated != sha256:
        raise ValueError(
            f"{path} does not match its manifest {beside.name}: the file's SHA-256 is {sha256}, "
            f"the manifest says {stated} (the file changed after it was exported)"
        )
    return manifest
