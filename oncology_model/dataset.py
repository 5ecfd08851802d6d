"""Reading the UCI "Breast Cancer Wisconsin (Original)" file format.

No header, comma-separated, eleven columns: sample code number, the nine scores (`?` where not
measured) and the class (2 benign, 4 malignant). The original file ships in `oncology_model.data`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from oncology_model.datamodel import FEATURES, SCORE_MAX, SCORE_MIN, Prediction

BUNDLED_DATA_FILE = "breast-cancer-wisconsin.data"
N_COLUMNS = 2 + len(FEATURES)


class DatasetError(ValueError):
    """The data file is not in the UCI format; the message names the file and line."""


@dataclass(frozen=True)
class Dataset:
    """Scores `X` (float, NaN where not measured), labels `y` (1 malignant) and sample ids."""

    X: np.ndarray
    y: np.ndarray
    sample_ids: np.ndarray
    sha256: str
    source: str

    @property
    def n_rows(self) -> int:
        return len(self.y)


def bundled_data_path() -> Path:
    """Path of the shipped UCI file."""
    return Path(str(resources.files("oncology_model.data").joinpath(BUNDLED_DATA_FILE)))


def load_dataset(*, path: Path | None = None) -> Dataset:
    """Read a UCI-format file (default: the bundled one), checking every value."""
    path = path or bundled_data_path()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read data file {path}: {exc.strerror}") from exc
    rows: list[list[float]] = []
    labels: list[int] = []
    ids: list[int] = []
    for number, line in enumerate(raw.decode("ascii", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) != N_COLUMNS:
            raise DatasetError(f"{where}: expected {N_COLUMNS} columns, found {len(cells)}")
        ids.append(_integer(cells[0], where, "sample_code_number"))
        rows.append(
            [_score(cell, where, name) for cell, name in zip(cells[1:-1], FEATURES, strict=True)]
        )
        try:
            labels.append(1 if Prediction.from_class(int(cells[-1])) is Prediction.MALIGNANT else 0)
        except ValueError:
            raise DatasetError(f"{where}: class {cells[-1]!r} is not 2 or 4") from None
    if not rows:
        raise DatasetError(f"{path}: no rows")
    return Dataset(
        X=np.array(rows, dtype=np.float64),
        y=np.array(labels, dtype=np.int64),
        sample_ids=np.array(ids, dtype=np.int64),
        sha256=hashlib.sha256(raw).hexdigest(),
        source=path.name,
    )


def _integer(cell: str, where: str, name: str) -> int:
    try:
        return int(cell)
    except ValueError:
        raise DatasetError(f"{where}: {name} {cell!r} is not an integer") from None


def _score(cell: str, where: str, name: str) -> float:
    if cell == "?":
        return float("nan")
    value = _integer(cell, where, name)
    if not SCORE_MIN <= value <= SCORE_MAX:
        raise DatasetError(f"{where}: {name} {value} is outside {SCORE_MIN}..{SCORE_MAX}")
    return float(value)


def load_datasets(paths: list[Path]) -> Dataset:
    """Read one or more UCI files, or every file of a folder (hidden ones skipped), as one Dataset.

    One file is `load_dataset` as it is. Several are concatenated in the order given (a folder's in
    name order); the source then names them all and `sha256` is the SHA-256 of their
    `sha256sum`-style listing ("HASH  NAME" lines), so the same files always give the same value.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if not found:
                raise DatasetError(f"data folder {path} holds no files")
            files.extend(found)
        else:
            files.append(path)
    parts = [load_dataset(path=file) for file in files]
    return parts[0] if len(parts) == 1 else concat_datasets(parts)


def concat_datasets(parts: list[Dataset]) -> Dataset:
    """The rows of several Datasets, in order, as one."""
    listing = "".join(f"{part.sha256}  {part.source}\n" for part in parts)
    return Dataset(
        X=np.concatenate([part.X for part in parts]),
        y=np.concatenate([part.y for part in parts]),
        sample_ids=np.concatenate([part.sample_ids for part in parts]),
        sha256=hashlib.sha256(listing.encode()).hexdigest(),
        source=", ".join(part.source for part in parts),
    )
