"""Models and data in a bucket (`oncology_model.storage` moves the objects).

A model version lives under `<out>/<model version>/`: `metadata.json` and the artifacts it lists
(as in an artifact folder), the training report under `report/`, the wheel under `dist/`.
`publish_model` writes one and never overwrites a version already there; `fetch_model`
downloads one, every artifact checked against the metadata's SHA-256 as it arrives, so that a
missing or altered object is refused by name and nothing partial is ever left to load.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oncology_model import storage
from oncology_model.integrity import (
    METADATA_FILE,
    ArtifactError,
    checked_metadata,
    verify_artifacts,
)
from oncology_model.manifest import SUFFIX as MANIFEST_SUFFIX
from oncology_model.storage import ObjectUrl, StorageError

METADATA_LIMIT = 16 * 1024 * 1024  # far above any real metadata.json; refuses a wrong object
REPORT_PREFIX = "report/"
WHEEL_PREFIX = "dist/"
# Set by gunicorn's master for its workers when its download of the model failed (the reason):
# they stay unready with it rather than try again (see gunicorn.conf.py).
DOWNLOAD_FAILED = "ONCOLOGY_ARTIFACTS_DOWNLOAD_FAILED"


@dataclass(frozen=True)
class Fetched:
    """A model downloaded from `source` into `directory`: its metadata, bytes and seconds."""

    source: ObjectUrl
    directory: Path
    metadata: dict[str, Any]
    size: int
    seconds: float

    def summary(self) -> str:
        """One line for a log: which model, from where, how big, how long."""
        return (
            f"model {self.metadata.get('model_version')} downloaded from {self.source} "
            f"({len(self.metadata['artifacts']) + 1} objects, {self.size:,} bytes) and verified "
            f"in {self.seconds:.2f} s"
        )


def fetch_model(source: ObjectUrl, directory: Path) -> Fetched:
    """Download the model version at `source` (a prefix) into the empty folder `directory`.

    `metadata.json` first, then each artifact it lists, each checked against its SHA-256 as it
    arrives; metadata.json is written last, so that `directory` holds a loadable model only
    when every artifact arrived whole and matched. Any failure raises ArtifactError naming the
    object and empties `directory`."""
    started = time.monotonic()
    prefix = source.as_prefix()
    try:
        metadata, size = _fetch_verified(prefix, directory)
    except BaseException:
        for path in directory.iterdir():
            path.unlink()
        raise
    return Fetched(prefix, directory, metadata, size, time.monotonic() - started)


def _fetch_verified(prefix: ObjectUrl, directory: Path) -> tuple[dict[str, Any], int]:
    metadata_url = prefix.child(METADATA_FILE)
    try:
        raw = storage.read_bytes(metadata_url, limit=METADATA_LIMIT)
    except StorageError as error:
        raise ArtifactError(f"model metadata {error}") from None
    try:
        metadata = checked_metadata(json.loads(raw), str(metadata_url))
    except ValueError as error:
        raise ArtifactError(f"model metadata {metadata_url} is unreadable: {error}") from None
    listed = metadata.get("artifacts")
    if not isinstance(listed, dict) or not listed:
        raise ArtifactError(f"model metadata {metadata_url} lists no artifacts")
    size = len(raw)
    for name, entry in listed.items():
        url = prefix.child(name)
        if Path(name).name != name or name.startswith(".") or name == METADATA_FILE:
            raise ArtifactError(f"model metadata {metadata_url} lists {name!r}: not a file name")
        expected = entry.get("sha256") if isinstance(entry, dict) else None
        if not expected:
            raise ArtifactError(f"model metadata lists no SHA-256 for {url}")
        path = directory / name
        try:
            actual = storage.download(url, path)
        except StorageError as error:
            raise ArtifactError(f"model artifact {error}") from None
        if actual != expected:
            path.unlink()
            raise ArtifactError(
                f"model artifact {url} fails verification: SHA-256 {actual} does not match "
                f"the metadata's {expected}; refusing to load it"
            )
        size += path.stat().st_size
    (directory / METADATA_FILE).write_bytes(raw)
    return metadata, size


def fetched_model(source: ObjectUrl, *, scratch: Path | None = None) -> Fetched:
    """`fetch_model` into a new temporary folder (under `scratch`, else TMPDIR), which the
    caller removes; the folder is removed here when the download fails."""
    directory = Path(tempfile.mkdtemp(prefix="oncology-model-", dir=scratch))
    try:
        return fetch_model(source, directory)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


def local_model(where: Path | ObjectUrl, scratch: Path) -> Path:
    """An artifact folder for `where`: itself, or the bucket's model fetched under `scratch`."""
    if isinstance(where, Path):
        return where
    return fetched_model(where, scratch=scratch).directory


def version_prefix(out: ObjectUrl, model_version: str) -> ObjectUrl:
    """Where a model version lives under the models' prefix `out`."""
    return out.as_prefix().child(model_version + "/")


def publish_model(
    artifacts: Path, out: ObjectUrl, *, report: Path | None = None, wheel: Path | None = None
) -> ObjectUrl:
    """Upload a trained model (verified first) to `<out>/<model version>/`, with its report
    folder and its wheel when given; metadata.json last, so that a version shows as a model only
    once all its artifacts are there. Refuses (ArtifactError) a version already there."""
    metadata = verify_artifacts(artifacts)
    target = version_prefix(out, str(metadata["model_version"]))
    if storage.any_under(target):
        raise ArtifactError(
            f"model {metadata['model_version']} is already in {target}: a model version is never "
            "overwritten (the same data and settings give the same model)"
        )
    try:
        if report is not None:
            storage.put_tree(report, target.child(REPORT_PREFIX), only_new=True)
        if wheel is not None:
            storage.put_file(wheel, target.child(WHEEL_PREFIX + wheel.name), only_new=True)
        for name in metadata["artifacts"]:
            storage.put_file(artifacts / name, target.child(name), only_new=True)
        storage.put_file(artifacts / METADATA_FILE, target.child(METADATA_FILE), only_new=True)
    except StorageError as error:
        raise ArtifactError(f"model {metadata['model_version']} not published: {error}") from None
    return target


class LocalData:
    """Local files or folders for data locations, in the same order (`paths`): a bucket's
    object is downloaded under `scratch` with its own name (and its manifest beside it, when
    there is one), a prefix (`s3://bucket/prefix/`, or a
    key that names no object but has objects under it) as a folder of its objects (those
    directly under it, in name order, hidden ones skipped: as a local folder is read)."""

    def __init__(self, locations: list[Path | ObjectUrl], scratch: Path) -> None:
        from oncology_model.dataset import DatasetError  # pandas: not imported where serving

        self.paths: list[Path] = []
        self._urls: dict[str, str] = {}
        for number, where in enumerate(locations):
            if isinstance(where, Path):
                self.paths.append(where)
                continue
            folder = scratch / f"data-{number}"
            folder.mkdir()
            beside = [] if where.is_prefix else _listed(where)
            if where in beside:
                self.paths.append(self._download(where, folder / where.name))
                # Its manifest (`NAME.manifest.json`, oncology_model.manifest), checked on reading.
                for url in beside:
                    if url.key == where.key + MANIFEST_SUFFIX:
                        self._download(url, folder / url.name)
                continue
            objects = _listed(where.as_prefix())
            if not objects:
                raise DatasetError(
                    f"{where}: no such object, and no objects under {where.as_prefix()}"
                )
            for url in objects:
                self._download(url, folder / url.name)
            self.paths.append(folder)

    def _download(self, url: ObjectUrl, path: Path) -> Path:
        from oncology_model.dataset import DatasetError

        try:
            storage.download(url, path)
        except StorageError as error:
            raise DatasetError(f"cannot read data file {error}") from None
        self._urls[str(path)] = str(url)
        return path

    def shown(self, message: str) -> str:
        """`message` with each downloaded file's local path replaced by its URL."""
        for path, url in self._urls.items():
            message = message.replace(path, url)
        return message


def _listed(prefix: ObjectUrl) -> list[ObjectUrl]:
    from oncology_model.dataset import DatasetError

    try:
        return [url for url in storage.list_objects(prefix) if url.key.startswith(prefix.key)]
    except StorageError as error:
        raise DatasetError(f"cannot read data: {error}") from None
