"""Reading data files: the UCI "Breast Cancer Wisconsin (Original)" format, or a headered CSV.

The UCI format has no header: comma-separated, eleven columns: sample code number, the nine scores
(`?` where not measured) and the class (2 benign, 4 malignant). The original file ships in
`oncology_model.data`. A headered file (a spreadsheet export) names its columns in its first line:
`sample_code_number`, the nine score names of `FEATURES` and `class`, in any order; an empty cell
is not measured too, and a sample code may be any text (a prediction id, an accession number).

A data file may have a manifest beside it, `NAME.manifest.json` (what `oncology-cases export`
writes: the query that selected the rows, their count per class, the file's SHA-256). The
manifest is checked against the file and kept in the Dataset, so that a model's metadata names the
data it learned from; a folder's manifests are not read as data.

`CsvTable` reads either kind in blocks of lines with `pandas.read_csv`, every cell as text
(dtype object, no NA guessing: pandas would read `nan`, `NA` or `null` as missing and refuse `x`
without saying where), so that each cell meets this project's rules with its line and column.
It is shared by `load_dataset` (training) and `oncology-predict` (scoring files of any size).
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import warnings
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from oncology_model.datamodel import FEATURES, SCORE_MAX, SCORE_MIN, Prediction
from oncology_model.manifest import checked_manifest, is_manifest

BUNDLED_DATA_FILE = "breast-cancer-wisconsin.data"
ID_COLUMN = "sample_code_number"
CLASS_COLUMN = "class"
UCI_COLUMNS: tuple[str, ...] = (ID_COLUMN, *FEATURES, CLASS_COLUMN)
"""The columns of the UCI format, in order; a headered file uses these names."""
N_COLUMNS = len(UCI_COLUMNS)
BLOCK_LINES = 65_536


class DatasetError(ValueError):
    """The data file cannot be read as a data set; the message names the file and line."""


@dataclass(frozen=True)
class Dataset:
    """Scores `X` (float, NaN where not measured), labels `y` (1 malignant), sample ids (int64,
    or text when some file's codes are not all integers) and the files' manifests, if any."""

    X: np.ndarray
    y: np.ndarray
    sample_ids: np.ndarray
    sha256: str
    source: str
    manifests: tuple[dict[str, Any], ...] = ()

    @property
    def n_rows(self) -> int:
        return len(self.y)


def bundled_data_path() -> Path:
    """Path of the shipped UCI file."""
    return Path(str(resources.files("oncology_model.data").joinpath(BUNDLED_DATA_FILE)))


@dataclass(frozen=True)
class Block:
    """Consecutive records of a file: `cells` holds their text, one row per record, indexed by
    line number, columns by position; `records` their raw bytes (no line end), in the same order;
    `bad_lines` the records that do not have the table's number of columns: (line, rule, bytes)."""

    cells: pd.DataFrame
    records: list[bytes]
    bad_lines: list[tuple[int, str, bytes]]


class CsvTable:
    """A UCI-format or headered CSV file, read in blocks of `block_lines` lines.

    `columns` are the header's names (`headered`) or `UCI_COLUMNS`. Line numbers count every
    physical line from 1, the header and blank lines too (blank lines are skipped); a record
    must sit on one line.
    """

    def __init__(self, stream: BinaryIO, *, block_lines: int = BLOCK_LINES) -> None:
        self._stream = stream
        self._block_lines = block_lines
        self._pending: list[bytes] = []
        self._next_line = 1
        first = b""
        for line in stream:
            self._next_line += 1
            if line.strip():
                first = line.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark (Excel)
                break
        self.first_line = self._next_line - 1
        cells = _split(first) if first else []
        # A header names at least one known column; the UCI format's first line is data.
        self.headered = any(cell.strip() in UCI_COLUMNS for cell in cells)
        if self.headered:
            self.columns: list[str] = [cell.strip() for cell in cells]
        else:
            self.columns = list(UCI_COLUMNS)
            if first:
                self._pending = [first]
                self._next_line -= 1

    @property
    def width(self) -> int:
        return len(self.columns)

    def blocks(self) -> Iterator[Block]:
        """The records in blocks, in file order."""
        while True:
            raw = self._pending + list(itertools.islice(self._stream, self._block_lines))
            self._pending = []
            if not raw:
                return
            numbers: list[int] = []
            records: list[bytes] = []
            for number, line in enumerate(raw, start=self._next_line):
                if line.strip():
                    numbers.append(number)
                    records.append(line.rstrip(b"\r\n"))
            self._next_line += len(raw)
            if records:
                yield self._parse(numbers, records)

    def _parse(self, numbers: list[int], records: list[bytes]) -> Block:
        cells = self._read(records)
        if cells is not None and len(cells) == len(records):
            # One spare column catches a record one cell too wide. pandas pads a short record
            # with empty cells and reads a wide one ending in an empty cell like a right one: the
            # rows that end in an empty cell (or a quote) have their width checked for real.
            spare = cells.pop(self.width).to_numpy()
            doubtful = (cells[self.width - 1].to_numpy() == "") | np.array(
                [record[-1:] in _DOUBTFUL_ENDS for record in records]
            )
            if not (spare != "").any() and all(
                len(_split(records[i])) == self.width for i in np.flatnonzero(doubtful).tolist()
            ):
                cells.index = pd.Index(numbers, dtype=np.int64)
                return Block(cells, records, [])
        # Some record is too wide, too short or spans lines: sort them out one by one.
        good: list[int] = []
        bad: list[tuple[int, str, bytes]] = []
        for i, record in enumerate(records):
            rule = self._record_error(record)
            if rule is None:
                good.append(i)
            else:
                bad.append((numbers[i], rule, record))
        kept = [records[i] for i in good]
        cells = self._read(kept) if kept else pd.DataFrame(columns=range(self.width + 1))
        if cells is None or len(cells) != len(kept):
            raise DatasetError(f"line {numbers[0]}: records from here on cannot be read as CSV")
        cells = cells.drop(columns=self.width).astype(object)
        cells.index = pd.Index([numbers[i] for i in good], dtype=np.int64)
        return Block(cells, kept, bad)

    def _read(self, records: list[bytes]) -> pd.DataFrame | None:
        """The records' cells as text, or None when some record has too many cells."""
        with warnings.catch_warnings():
            # pandas only warns when the first record is wider than the names, and drops cells.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            try:
                return pd.read_csv(
                    io.BytesIO(b"\n".join(records)),
                    header=None,
                    names=range(self.width + 1),
                    index_col=False,
                    dtype=object,
                    na_filter=False,
                    skip_blank_lines=False,
                    encoding="utf-8",
                    encoding_errors="replace",
                )
            except (pd.errors.ParserError, pd.errors.ParserWarning):
                return None

    def _record_error(self, record: bytes) -> str | None:
        if record.count(b'"') % 2:
            return "a quoted cell is not closed on its line (each record must be one line)"
        found = len(_split(record))
        return None if found == self.width else f"expected {self.width} columns, found {found}"


_DOUBTFUL_ENDS = (b",", b'"')


def _split(line: bytes) -> list[str]:
    """The cells of one line, as the csv module reads them."""
    return next(csv.reader([line.decode("utf-8", errors="replace").rstrip("\r\n")]), [])


def converted(
    cells: pd.Series, convert: Callable[[str], tuple[float, str | None]]
) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """Apply `convert` (text -> value, error) once per distinct text of a column of cells.

    Returns the values, the index into `errors` of each cell, and the errors per distinct text
    (None where the text is fine): a column of a million scores costs ten Python calls.
    """
    codes, uniques = pd.factorize(cells.to_numpy(dtype=object))
    results = [convert(str(text)) for text in uniques]
    values = np.array([value for value, _ in results], dtype=np.float64)
    errors = [error for _, error in results]
    return values[codes], codes, errors


def load_dataset(*, path: Path | None = None) -> Dataset:
    """Read a UCI-format or headered file (default: the bundled one), checking every value."""
    path = path or bundled_data_path()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read data file {path}: {exc.strerror}") from exc
    sha256 = hashlib.sha256(raw).hexdigest()
    try:
        manifest = checked_manifest(path, sha256)
    except ValueError as exc:
        raise DatasetError(str(exc)) from None
    try:
        table = CsvTable(io.BytesIO(raw))
        _check_training_header(table)
        columns: dict[str, list[np.ndarray]] = {name: [] for name in UCI_COLUMNS}
        for block in table.blocks():
            if block.bad_lines:
                line, rule, _ = block.bad_lines[0]
                raise DatasetError(f"line {line}: {rule}")
            for name, values in _training_values(table, block.cells).items():
                columns[name].append(values)
    except DatasetError as exc:
        raise DatasetError(f"{path}, {exc}") from None
    if not columns[ID_COLUMN]:
        raise DatasetError(f"{path}: no rows")
    X = np.column_stack([np.concatenate(columns[name]) for name in FEATURES])
    return Dataset(
        X=X,
        y=np.concatenate(columns[CLASS_COLUMN]).astype(np.int64),
        sample_ids=_sample_ids(np.concatenate(columns[ID_COLUMN])),
        sha256=sha256,
        source=path.name,
        manifests=(manifest,) if manifest else (),
    )


def _sample_ids(codes: np.ndarray) -> np.ndarray:
    """Sample codes as int64 when they are all integers (the UCI file's: grouped cross-validation
    then folds exactly as it always has), else as text."""
    if codes.dtype != object:
        return codes.astype(np.int64)
    texts = pd.Series(codes, dtype=object)
    if texts.str.fullmatch(r"[+-]?\d{1,18}").all():
        return np.asarray(texts.astype(np.int64))
    return np.asarray(texts, dtype=object)


def _check_training_header(table: CsvTable) -> None:
    if not table.headered:
        return
    names = table.columns
    problems = [f"{name} appears twice" for name in UCI_COLUMNS if names.count(name) > 1]
    problems += [f"{name} is missing" for name in UCI_COLUMNS if name not in names]
    problems += [
        f"{name!r} is not a column of a data set" for name in names if name not in UCI_COLUMNS
    ]
    if problems:
        raise DatasetError(
            f"line {table.first_line}: the header must name {ID_COLUMN}, the nine scores and "
            f"{CLASS_COLUMN}: " + "; ".join(problems)
        )


def _training_values(table: CsvTable, cells: pd.DataFrame) -> dict[str, np.ndarray]:
    """The block's ids, scores and labels (1 malignant); the first bad cell raises, naming its
    line (the first line with any bad cell, then its first bad cell in file order)."""
    values: dict[str, np.ndarray] = {}
    first: tuple[int, int, str] | None = None
    for position, name in enumerate(table.columns):
        if name == ID_COLUMN and table.headered:
            values[name] = cells[position].str.strip().to_numpy(dtype=object)
            empty = np.flatnonzero(values[name] == "")
            if len(empty):
                candidate = (int(cells.index[empty[0]]), position, f"{ID_COLUMN} is empty")
                first = candidate if first is None else min(first, candidate)
            continue
        if name == ID_COLUMN:
            convert: Callable[[str], tuple[float, str | None]] = _id_cell
        elif name == CLASS_COLUMN:
            convert = _class_cell
        else:
            convert = _score_cell(name, empty_is_missing=table.headered)
        column, codes, errors = converted(cells[position], convert)
        values[name] = column
        bad_codes = [code for code, error in enumerate(errors) if error is not None]
        if bad_codes:
            row = int(np.flatnonzero(np.isin(codes, bad_codes))[0])
            candidate = (int(cells.index[row]), position, str(errors[codes[row]]))
            first = candidate if first is None else min(first, candidate)
    if first is not None:
        raise DatasetError(f"line {first[0]}: {first[2]}")
    return values


def _integer(text: str, name: str) -> tuple[float, str | None]:
    try:
        return float(int(text)), None
    except ValueError:
        return 0.0, f"{name} {text!r} is not an integer"


def _id_cell(text: str) -> tuple[float, str | None]:
    return _integer(text.strip(), ID_COLUMN)


def _class_cell(text: str) -> tuple[float, str | None]:
    text = text.strip()
    try:
        malignant = Prediction.from_class(int(text)) is Prediction.MALIGNANT
    except ValueError:
        return 0.0, f"class {text!r} is not 2 or 4"
    return float(malignant), None


def _score_cell(name: str, *, empty_is_missing: bool) -> Callable[[str], tuple[float, str | None]]:
    """`?` is not measured; so is an empty cell in a headered file (not in the UCI format)."""
    missing = ("?", "") if empty_is_missing else ("?",)

    def convert(text: str) -> tuple[float, str | None]:
        text = text.strip()
        if text in missing:
            return float("nan"), None
        value, error = _integer(text, name)
        if error is None and not SCORE_MIN <= value <= SCORE_MAX:
            return value, f"{name} {int(value)} is outside {SCORE_MIN}..{SCORE_MAX}"
        return value, error

    return convert


def load_datasets(paths: list[Path]) -> Dataset:
    """Read one or more data files, or every file of a folder (hidden ones skipped), as one Dataset.

    One file is `load_dataset` as it is. Several are concatenated in the order given (a folder's in
    name order); the source then names them all and `sha256` is the SHA-256 of their
    `sha256sum`-style listing ("HASH  NAME" lines), so the same files always give the same value.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and not p.name.startswith(".") and not is_manifest(p)
            )
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
    ids = [part.sample_ids for part in parts]
    if any(codes.dtype == object for codes in ids):  # text and integer codes: all as text
        ids = [codes.astype(str).astype(object) for codes in ids]
    return Dataset(
        X=np.concatenate([part.X for part in parts]),
        y=np.concatenate([part.y for part in parts]),
        sample_ids=np.concatenate(ids),
        sha256=hashlib.sha256(listing.encode()).hexdigest(),
        source=", ".join(part.source for part in parts),
        manifests=tuple(manifest for part in parts for manifest in part.manifests),
    )


FINGERPRINT = "BLAKE2b-64 of the row's nine scores and class as text (`5,1,?,...,1:1`)"


def row_fingerprints(data: Dataset) -> list[str]:
    """The distinct rows of `data` as sorted short hashes (`FINGERPRINT`): what a model's
    metadata records of its training rows, so that the gate can tell which evaluation rows a
    model was trained on without keeping the data itself."""
    return sorted(set(_fingerprints(data)))


def count_seen(data: Dataset, fingerprints: Collection[str]) -> int:
    """How many rows of `data` are among `fingerprints` (same scores and class)."""
    known = set(fingerprints)
    return sum(fingerprint in known for fingerprint in _fingerprints(data))


def _fingerprints(data: Dataset) -> Iterator[str]:
    for row, label in zip(data.X.tolist(), data.y.tolist(), strict=True):
        text = ",".join("?" if v != v else str(int(v)) for v in row) + f":{int(label)}"
        yield hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
