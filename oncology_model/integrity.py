"""Where the trained artifacts live and how they are verified before anything reads them.

Metadata (`metadata.json`) records the SHA-256 of every artifact; `verified_bytes` returns a file's
content only when it matches, so no caller ever parses an artifact it could not verify.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

METADATA_FILE = "metadata.json"
ONNX_FILE = "model.onnx"
JOBLIB_FILE = "model.joblib"
METADATA_FORMAT = 1


class ArtifactError(RuntimeError):
    """An artifact is missing, altered or incompatible; the message names the file."""


def bundled_artifacts_dir() -> Path:
    """The folder of the artifacts bundled in the package."""
    return Path(str(resources.files("oncology_model.artifacts")))


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_metadata(directory: Path) -> dict[str, Any]:
    """Parse and sanity-check `metadata.json` in `directory`."""
    path = directory / METADATA_FILE
    try:
        metadata = json.loads(path.read_bytes())
    except FileNotFoundError:
        where = "" if directory.is_dir() else f" (no folder {directory})"
        raise ArtifactError(
            f"model metadata {path} is missing{where}: name a folder of model artifacts, "
            "such as the DIR that `oncology-train --out DIR` wrote"
        ) from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"model metadata {path} is unreadable: {exc}") from None
    return checked_metadata(metadata, str(path))


def checked_metadata(metadata: Any, where: str) -> dict[str, Any]:
    """Parsed metadata (read from `where`), once it is of this version's format."""
    if not isinstance(metadata, dict) or metadata.get("format") != METADATA_FORMAT:
        raise ArtifactError(
            f"model metadata {where} is not format {METADATA_FORMAT}: retrain with this version"
        )
    return metadata


def verified_bytes(directory: Path, name: str, metadata: dict[str, Any]) -> bytes:
    """The content of artifact `name`, only if its SHA-256 matches the metadata."""
    path = directory / name
    expected = metadata.get("artifacts", {}).get(name, {}).get("sha256")
    if not expected:
        raise ArtifactError(f"model metadata lists no SHA-256 for {path}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"model artifact {path} is missing") from None
    except OSError as exc:
        raise ArtifactError(f"model artifact {path} is unreadable: {exc.strerror}") from None
    actual = sha256_of(data)
    if actual != expected:
        raise ArtifactError(
            f"model artifact {path} fails verification: SHA-256 {actual} does not match "
            f"the metadata's {expected}; refusing to load it"
        )
    return data


def verify_artifacts(directory: Path) -> dict[str, Any]:
    """The metadata of `directory`, once every artifact it lists is present and matches."""
    metadata = read_metadata(directory)
    listed = metadata.get("artifacts")
    if not isinstance(listed, dict) or not listed:
        raise ArtifactError(f"model metadata {directory / METADATA_FILE} lists no artifacts")
    for name in listed:
        verified_bytes(directory, name, metadata)
    return metadata


def version_tuple(version: str) -> tuple[int, ...]:
    """Leading numeric parts of a version string: "1.31.1" -> (1, 31, 1)."""
    parts = []
    for part in version.split("."):
        digits = "".join(c for c in part if c.isdigit()) if part[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def write_json(path: Path, content: dict[str, Any]) -> None:
    """Write JSON deterministically (sorted keys, fixed indentation, trailing newline)."""
    path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")
