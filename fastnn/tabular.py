"""Tables for fastnn: reading CSV, TSV, Parquet and NPZ files, and ``TablePreprocessor``, which
turns the raw columns of a table into the float inputs of a network and back.

pandas and pyarrow read the text and Parquet files; they are the optional extra ``tables``
(``pip install ".[tables]"`` in the repository) and are imported only when such a file is read.
An ``.npz`` file (arrays ``X`` (n, f) numeric and ``y`` (n,)) needs neither: its columns are
named ``x0 .. x{f-1}`` and ``y``.

The preprocessing rules (fixed by ``fit``, stored in the model file by ``to_dict``):

- a column of numbers (int, float or bool) is standardised: (x - mean) / scale with the mean
  and population standard deviation of the training rows, scale 1 for a constant column;
- a column of text is one-hot encoded, its categories sorted; a value not seen in training is an
  error naming the column and the value;
- a column holding both numbers and text (e.g. ``1.5`` and ``abc``) is an error, and so is a
  text column with more than ``MAX_CATEGORIES`` distinct values (leave it out with ``ignore``);
- ``missing="drop"`` drops every training row with a missing value (and refuses missing values
  at prediction); ``missing="mean"`` replaces a missing number with the training mean (0 after
  scaling) and a missing category with an all-zero one-hot block. Rows whose target is missing
  are dropped either way;
- the task: a text or bool target, or one of integers with at most ``MAX_CLASSES_GUESSED``
  distinct values, is a classification; any other numeric target a regression. ``task=``
  overrides the guess. Class names are the target's values as text, sorted (numerically for
  numbers; ``False``, ``True`` for bools);
- column names are text: ``str(name)`` of each column of a DataFrame or key of a dict (a
  DataFrame made from an array has columns ``"0"``, ``"1"``, ...), and a name that appears twice
  is an error.
"""
import csv
import math
import numbers
import os
import reprlib
import sys
from collections.abc import Mapping

import numpy as np

from .errors import MissingExtra, TableError

TASKS = ("classification", "regression")
MISSING = ("drop", "mean")
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".npz")
# An integer target with at most this many distinct values is taken as class labels.
MAX_CLASSES_GUESSED = 20
# A text column with more distinct values is refused (an identifier or free text, whose one-hot
# block would dwarf the table) rather than encoded.
MAX_CATEGORIES = 1000
FORMAT = "fastnn-table-preprocessor"
FORMAT_VERSION = 1


def require_pandas():
    """Import pandas and pyarrow (the extra "tables"); returns pandas."""
    try:
        import pandas
        import pyarrow  # noqa: F401  (the engine pandas reads CSV and Parquet with here)
    except ImportError as exc:
        raise MissingExtra("reading CSV, TSV or Parquet needs pandas and pyarrow", "tables") from exc
    return pandas


# -- reading --------------------------------------------------------------------------------------

def read_table(path):
    """The table in ``path``: a pandas DataFrame for ``.csv``, ``.tsv`` and ``.parquet``; for
    ``.npz`` a dict of 1-D arrays (``x0 .. x{f-1}`` from the columns of ``X``, and ``y`` when the
    file has it). Raises TableError for an unknown suffix, an empty or damaged file or bytes that
    are not UTF-8 (naming the line and column), OSError for a missing file and MissingExtra when
    pandas or pyarrow is not installed."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in TABLE_SUFFIXES:
        raise TableError(f"{path}: unknown table type {suffix or '(no suffix)'!r}; expected one of "
                         f"{', '.join(TABLE_SUFFIXES)} or an IDX directory")
    if not os.path.isfile(path):
        raise FileNotFoundError(2, "No such file", path)
    if os.path.getsize(path) == 0:
        raise TableError(f"{path}: the file is empty")
    if suffix == ".npz":
        return _read_npz(path)
    pandas = require_pandas()
    import pyarrow
    try:
        if suffix == ".parquet":
            frame = pandas.read_parquet(path, engine="pyarrow")
        else:
            frame = pandas.read_csv(path, sep="\t" if suffix == ".tsv" else ",", engine="pyarrow")
    except (pyarrow.ArrowInvalid, pandas.errors.ParserError, pandas.errors.EmptyDataError,
            UnicodeDecodeError, ValueError) as exc:
        raise _read_error(path, suffix, exc) from None
    if len(frame.columns) == 0:
        raise TableError(f"{path}: the table has no columns")
    if suffix != ".parquet" and any(_holds_bytes(frame[c]) for c in frame.columns):
        raise TableError(_not_utf8(path, suffix))
    # The CSV reader renames a repeated name ("a" to "a.1"): the header tells them apart.
    _check_unique(frame.columns if suffix == ".parquet" else _header(path, suffix), path)
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _header(path, suffix):
    """The column names as the first record of a CSV or TSV file writes them."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        return next(csv.reader(f, delimiter="\t" if suffix == ".tsv" else ","), [])


def _check_unique(names, where):
    """TableError naming the first of ``names`` (taken as text) that appears twice."""
    seen = set()
    for name in map(str, names):
        if name in seen:
            raise TableError(f"{where}: the column name {name!r} appears twice")
        seen.add(name)


def _holds_bytes(column):
    # pyarrow reads a CSV column that is not valid UTF-8 as binary: every value is bytes.
    if column.dtype != object:
        return False
    first = column.first_valid_index()
    return first is not None and isinstance(column[first], bytes)


def _read_error(path, suffix, exc):
    text = " ".join(str(exc).split())
    if suffix != ".parquet" and ("UTF8" in text or "utf-8" in text.lower()):
        return TableError(_not_utf8(path, suffix))
    if "Empty CSV" in text or "No columns to parse" in text:
        return TableError(f"{path}: the file is empty")
    return TableError(f"{path}: cannot read the table ({text})")


def _not_utf8(path, suffix):
    """Where the first byte that is not UTF-8 lies: line number and column name."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        raw.decode("utf-8")
        return f"{path}: the file is not UTF-8 text"
    except UnicodeDecodeError as exc:
        position = exc.start
    line_start = raw.rfind(b"\n", 0, position) + 1
    line = raw.count(b"\n", 0, position) + 1
    sep = b"\t" if suffix == ".tsv" else b","
    header = raw[:raw.find(b"\n")] if b"\n" in raw else raw
    names = header.decode("utf-8", "replace").strip("\r").split(sep.decode())
    index = raw.count(sep, line_start, position)
    column = f"column {names[index]!r}" if line > 1 and index < len(names) else f"column {index + 1}"
    return (f"{path}: line {line}, {column}: byte 0x{raw[position]:02x} is not UTF-8; save the "
            "file as UTF-8")


def read_arrays(path):
    """(X, y or None) of an ``.npz`` table: X a 2-D numeric array, y 1-D with one entry per row
    of X. Raises TableError for anything else."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(2, "No such file", path)
    if os.path.getsize(path) == 0:
        raise TableError(f"{path}: the file is empty")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "X" not in z.files:
                raise TableError(f"{path}: no array 'X' (an .npz table holds X (n, features) and "
                                 f"y (n,)); it has {', '.join(z.files) or 'none'}")
            X = z["X"]
            y = z["y"] if "y" in z.files else None
    except TableError:
        raise
    except Exception as exc:  # any failure to parse an untrusted archive
        raise TableError(f"{path}: cannot read the .npz file ({type(exc).__name__}: {exc})") from None
    if X.ndim != 2 or X.dtype.kind not in "biuf":
        raise TableError(f"{path}: X must be a 2-D numeric array, got {X.dtype}{X.shape}")
    if y is not None:
        if y.ndim != 1 or len(y) != len(X):
            raise TableError(f"{path}: y must be 1-D with one entry per row of X ({len(X)}), got "
                             f"shape {y.shape}")
    return X, y


def _read_npz(path):
    X, y = read_arrays(path)
    columns = {f"x{j}": X[:, j] for j in range(X.shape[1])}
    if y is not None:
        columns["y"] = y
    return columns


# -- columns of a table (a DataFrame or a dict of 1-D arrays) -------------------------------------

def _table(frame):
    """The columns of ``frame`` (a DataFrame or a dict of 1-D columns) as a dict {name as text:
    column}. TypeError for anything else, TableError for a name that appears twice."""
    if not (isinstance(frame, Mapping) or hasattr(frame, "columns") and hasattr(frame, "items")):
        raise TypeError("frame: expected a pandas DataFrame or a dict of 1-D columns (name: "
                        f"values), got {type(frame).__name__}")
    columns = [(str(name), column) for name, column in frame.items()]
    _check_unique([name for name, _ in columns], "frame")
    return dict(columns)


def _row_count(frame, names):
    """The number of rows of the columns ``names`` of ``frame`` (a dict made by ``_table``),
    checked: TypeError naming the first column that is not a sequence of values, TableError
    naming the first that is not 1-D or whose length differs from the others'."""
    count, first = 0, None
    for name in names:
        column = frame[name]
        try:
            ndim = np.ndim(column)
        except ValueError:  # nested sequences of different lengths
            ndim = None
        if ndim == 0:
            raise TypeError(f"column {name!r}: expected a 1-D column (an array or list of one "
                            f"value per row; [value] for one row), got {type(column).__name__} "
                            f"{reprlib.repr(column)}")
        if ndim != 1:
            shape = ("nested sequences of different lengths" if ndim is None else
                     f"shape {np.shape(column)}")
            raise TableError(f"column {name!r}: expected a 1-D column (one value per row), got "
                             f"{shape}")
        if first is None:
            count, first = len(column), name
        elif len(column) != count:
            raise TableError(f"column {name!r} has length {len(column)} but column {first!r} "
                             f"has length {count}; the columns of a table must have equal "
                             "lengths")
    return count


def _raw_column(frame, name):
    column = frame[name]
    if hasattr(column, "to_numpy"):
        return column.to_numpy()
    raw = np.asarray(column)
    if raw.dtype.kind == "U" and not isinstance(column, np.ndarray):
        # numpy turns every value of a list holding text into text, NaN into "nan"
        raw = np.array(column, dtype=object)
    return raw


def _is_missing(value):
    if value is None:
        return True
    if isinstance(value, float):
        return value != value
    return type(value).__name__ == "NAType"  # pandas.NA, without importing pandas


class _Column:
    """One column, classified: ``kind`` "number" (``values`` float64, NaN where missing; also a
    column without any value) or "text" (``values`` an object array of str, None where missing);
    ``missing`` a bool mask; ``bools`` whether the numbers are bools."""

    def __init__(self, frame, name):
        raw = _raw_column(frame, name)
        self.name, self.bools = name, False
        if raw.dtype.kind in "biuf":
            self.kind, self.bools = "number", raw.dtype.kind == "b"
            self.values = raw.astype(np.float64)
            self.missing = np.isnan(self.values)
        elif raw.dtype.kind in "US":
            self.kind = "text"
            self.values = raw.astype(str).astype(object)
            self.missing = np.zeros(len(raw), bool)
        else:
            self._from_objects(raw)
        bad = ~self.missing & np.isinf(self.values) if self.kind == "number" else None
        if bad is not None and bad.any():
            row = int(np.argmax(bad))
            raise TableError(f"column {name!r}: row {row + 1} is {self.values[row]}; expected a "
                             "finite number")

    def _from_objects(self, raw):
        pandas = sys.modules.get("pandas")  # loaded when the table came from a file
        if pandas is not None:
            self.missing = np.asarray(pandas.isna(raw), bool)
            all_text = pandas.api.types.infer_dtype(raw, skipna=True) in ("string", "empty")
        else:
            self.missing = np.fromiter((_is_missing(v) for v in raw), bool, len(raw))
            all_text = None
        if self.missing.all():
            self.kind, self.values = "number", np.full(len(raw), np.nan)
            return
        present = raw[~self.missing]
        if all_text is None or not all_text:
            is_text = np.fromiter((isinstance(v, str) for v in present), bool, len(present))
            all_text = bool(is_text.all())
        if all_text:
            self.kind, self.values = "text", raw.copy()
            self.values[self.missing] = None
            _check_not_mixed(self.name, present, np.flatnonzero(~self.missing))
            return
        is_number = np.fromiter((isinstance(v, numbers.Real) for v in present), bool, len(present))
        if not is_number.all():
            other = present[~(is_number | is_text)][0] if not (is_number | is_text).all() else None
            if other is not None:
                raise TableError(f"column {self.name!r}: holds a {type(other).__name__} value "
                                 f"({other!r}); expected numbers or text")
            row = int(np.flatnonzero(~self.missing)[np.argmax(is_text)]) + 1
            raise TableError(f"column {self.name!r} mixes numbers and text (e.g. "
                             f"{present[is_number][0]!r} and {present[is_text][0]!r} in row "
                             f"{row}); make it all numbers or all text")
        self.kind = "number"
        self.bools = all(isinstance(v, bool) for v in present)
        self.values = np.full(len(raw), np.nan)
        self.values[~self.missing] = present.astype(np.float64)

    def as_text(self):
        """The values as text (None where missing), each as ``text_of`` writes it."""
        if self.kind == "text":
            return self.values
        out = np.empty(len(self.values), object)
        for i, v in enumerate(self.values):
            out[i] = None if self.missing[i] else self.text_of(v)
        return out

    def text_of(self, value):
        """A value of a column of numbers as text: "False" or "True" for bools, integers
        without the ".0"."""
        return str(bool(value)) if self.bools else _number_text(value)


def _number_text(v):
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _check_not_mixed(name, texts, rows):
    """TableError when some values of a text column read as numbers and others do not (a
    numeric column with stray text, as a CSV reader leaves it); rows: the row of each text."""
    uniques = set(texts)
    numeric = {v for v in uniques if _reads_as_number(v)}
    if numeric and len(numeric) < len(uniques):
        i = next(i for i, v in enumerate(texts) if v not in numeric)
        raise TableError(f"column {name!r} mixes numbers and text (e.g. {min(numeric)!r} and "
                         f"{texts[i]!r} in row {int(rows[i]) + 1}); make it all numbers or all "
                         "text")


def _reads_as_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


# -- the preprocessor -----------------------------------------------------------------------------

class TablePreprocessor:
    """What a tabular model learnt from its training table, applied to new rows.

    Attributes (set by ``fit``; the model input order is the numeric block in
    ``numeric_columns`` order, then for each categorical column its one-hot block in
    ``categories`` order):

    - ``feature_columns`` list[str]: the raw input columns, in the table's order;
    - ``numeric_columns`` list[str], ``means`` and ``scales`` float64 ndarrays: x -> (x - mean) / scale;
    - ``categorical_columns`` list[str], ``categories`` list[list[str]]: the one-hot order;
    - ``missing`` "drop" | "mean"; ``task`` "classification" | "regression"; ``target`` str;
    - ``classes`` list[str] (label names, in output order) or None for a regression;
    - ``input_range`` float64 ndarray (n_inputs, 2): the least and greatest value of each model
      input over the training rows;
    - ``n_dropped``, ``n_imputed`` (int, from the last fit, not saved): rows left out, and rows
      kept with a value imputed.

    missing and task (None: guessed from the target) are the constructor's arguments.
    """

    def __init__(self, missing="drop", task=None):
        if missing not in MISSING:
            raise ValueError(f"missing: expected one of {', '.join(map(repr, MISSING))}, got {missing!r}")
        if task is not None and task not in TASKS:
            raise ValueError(f"task: expected None or one of {', '.join(map(repr, TASKS))}, got {task!r}")
        self.missing, self.task = missing, task
        self.target = None
        self.feature_columns, self.numeric_columns, self.categorical_columns = [], [], []
        self.means = self.scales = None
        self.categories, self.classes, self.input_range = [], None, None

    @property
    def n_inputs(self):
        return len(self.numeric_columns) + sum(len(c) for c in self.categories)

    @property
    def input_names(self):
        """One name per model input: the numeric column, or "column=category"."""
        return list(self.numeric_columns) + [f"{c}={v}" for c, cats in
                                             zip(self.categorical_columns, self.categories)
                                             for v in cats]

    # -- fitting --------------------------------------------------------------------------------

    def fit(self, frame, target, ignore=()):
        """Learn the columns, their statistics, the task and the classes from ``frame`` (a
        DataFrame or a dict of 1-D arrays) whose column ``target`` holds the labels; the columns
        named in ``ignore`` are left out (``target`` and ``ignore`` name columns as text).
        Returns self. Raises TypeError for a frame that is not a table or a name that is not a
        str, TableError naming the column for a name that appears twice, a missing target
        column, a target with one class, no rows left after dropping missing values, mixed
        types, a column without values or with too many categories."""
        self.fit_transform(frame, target, ignore)
        return self

    def fit_transform(self, frame, target, ignore=()):
        """``fit``, then ``(X, y, kept)`` for the training rows: X float64 (n, n_inputs), y the
        encoded targets (int64 class indices, or float64 values for a regression), kept the
        indices of the rows of ``frame`` used (rows with a missing target, and with
        missing="drop" any missing value, are left out)."""
        frame = _table(frame)
        names = list(frame)
        if not isinstance(target, str):
            raise TypeError(f"target: expected a column name (str), got {type(target).__name__} "
                            f"{target!r}")
        if target not in names:
            raise TableError(f"no target column {target!r}; the table has {_list(names)}")
        if len(names) < 2:
            raise TableError(f"the table has only the target column {target!r}; no inputs")
        ignore = [ignore] if isinstance(ignore, str) else list(ignore)
        for name in ignore:
            if not isinstance(name, str):
                raise TypeError(f"ignore: expected column names (str), got {type(name).__name__} "
                                f"{name!r}")
            if name not in names or name == target:
                raise TableError(f"cannot ignore column {name!r}: "
                                 + ("it is the target" if name == target else
                                    f"the table has {_list(names)}"))
        self.target = target
        self.feature_columns = [n for n in names if n != target and n not in ignore]
        if not self.feature_columns:
            raise TableError("no input columns are left")
        if _row_count(frame, [*self.feature_columns, target]) == 0:
            raise TableError("the table has no rows")
        columns = [_Column(frame, n) for n in self.feature_columns]
        y_column = _Column(frame, target)
        keep = ~y_column.missing
        if not keep.any():
            raise TableError(f"target column {target!r}: every value is missing")
        if self.missing == "drop":
            for c in columns:
                keep &= ~c.missing
            if not keep.any():
                worst = max(columns, key=lambda c: int(c.missing.sum()))
                raise TableError(f"every row has a missing value (column {worst.name!r} alone "
                                 f"misses {int(worst.missing.sum())} of {len(keep)}); nothing "
                                 "is left to train on (--missing mean imputes instead)")
        kept = np.flatnonzero(keep)
        self._fit_target(y_column, kept)
        self.numeric_columns, self.categorical_columns, self.categories = [], [], []
        means, scales = [], []
        for c in columns:
            present = ~c.missing[kept]
            if not present.any():
                raise TableError(f"column {c.name!r} has no values in the rows used for training")
            if c.kind == "number":
                mean, std = _mean_and_std(c.values[kept][present])
                self.numeric_columns.append(c.name)
                means.append(mean)
                scales.append(std if std > 0 and math.isfinite(std) else 1.0)
            else:
                categories = sorted(set(c.values[kept][present]))
                if len(categories) > MAX_CATEGORIES:
                    raise TableError(f"column {c.name!r} has {len(categories):,} distinct texts "
                                     f"(more than {MAX_CATEGORIES}): an identifier or free text? "
                                     f"Leave it out (--ignore {c.name})")
                self.categorical_columns.append(c.name)
                self.categories.append(categories)
        self.means, self.scales = np.array(means, np.float64), np.array(scales, np.float64)
        by_name = {c.name: c for c in columns}
        X = self._encode(by_name, kept)
        self.input_range = (np.stack([X.min(axis=0), X.max(axis=0)], axis=1) if X.shape[1]
                            else np.zeros((0, 2)))
        self.n_dropped = int(len(keep) - len(kept))
        incomplete = np.zeros(len(kept), bool)
        for c in columns:
            incomplete |= c.missing[kept]
        self.n_imputed = int(incomplete.sum())  # rows with a value imputed
        return X, self._encode_target(y_column, kept), kept

    def _fit_target(self, column, kept):
        task = self.task or _guess_task(column, kept)
        if task == "regression":
            if column.kind != "number":
                example = column.values[kept][0]
                raise TableError(f"target column {self.target!r} holds text (e.g. {example!r}); "
                                 "a regression needs numbers")
            self.classes = None
        else:
            values = column.values[kept]
            if column.kind == "number":
                classes = [column.text_of(v) for v in np.unique(values)]
            else:
                classes = sorted(set(values))
            if len(classes) < 2:
                raise TableError(f"target column {self.target!r} has one class ({classes[0]!r}) "
                                 "in the rows used; a classifier needs at least two")
            self.classes = classes
        self.task = task

    # -- applying -------------------------------------------------------------------------------

    def transform(self, frame):
        """The model inputs (n, n_inputs) float64 for every row of ``frame`` (a DataFrame or a
        dict of 1-D arrays holding at least ``feature_columns``; others are ignored), in order.
        Raises TypeError for a frame that is not a table, TableError naming the column for a
        column that is missing, of the wrong type or named twice, an unknown category, or
        (missing="drop") a missing value."""
        self._check_fitted()
        frame = _table(frame)
        columns, count = self._columns(frame, self.feature_columns)
        if self.missing == "drop":
            for c in columns.values():
                if c.missing.any():
                    row = int(np.argmax(c.missing))
                    raise TableError(f"column {c.name!r}: row {row + 1} has no value; the model "
                                     "was trained with --missing drop (train with --missing mean "
                                     "to impute)")
        return self._encode(columns, np.arange(count))

    def transform_xy(self, frame):
        """``(X, y, kept)`` for a table with the target column (test data): the rows are chosen
        as in training (a missing target, and with missing="drop" any missing value, leaves the
        row out); y is encoded as in ``fit_transform``."""
        self._check_fitted()
        frame = _table(frame)
        names = list(frame)
        if self.target not in names:
            raise TableError(f"no target column {self.target!r}; the table has {_list(names)}")
        columns, _ = self._columns(frame, [*self.feature_columns, self.target])
        y_column = _Column(frame, self.target)
        keep = ~y_column.missing
        if self.missing == "drop":
            for c in columns.values():
                keep &= ~c.missing
        kept = np.flatnonzero(keep)
        if len(kept) == 0:
            raise TableError("no row of the table is complete enough to test on")
        return self._encode(columns, kept), self._encode_target(y_column, kept), kept

    def _columns(self, frame, used):
        """({name: _Column} of the feature columns, the row count); ``used``: the columns whose
        lengths must agree (the features, and the target when it is read too)."""
        absent = [n for n in self.feature_columns if n not in frame]
        if absent:
            raise TableError(f"column {absent[0]!r} is missing from the table (the model takes "
                             f"{_list(self.feature_columns)})")
        count = _row_count(frame, used)
        if count == 0:
            raise TableError("the table has no rows")
        columns = {n: _Column(frame, n) for n in self.feature_columns}
        for name in self.numeric_columns:
            c = columns[name]
            if c.kind != "number":
                example = c.values[~c.missing][0]
                raise TableError(f"column {name!r}: expected numbers, as in training, got text "
                                 f"(e.g. {example!r})")
        return columns, count

    def _encode(self, columns, rows):
        X = np.zeros((len(rows), self.n_inputs), np.float64)
        offset = len(self.numeric_columns)
        if offset:
            # Column by column in contiguous rows of V, transposed into X once.
            V = np.stack([columns[name].values[rows] for name in self.numeric_columns])
            means, scales = self.means[:, None], self.scales[:, None]
            np.copyto(V, means, where=np.isnan(V))  # "mean" imputation (drop left none)
            V -= means
            V /= scales
            X[:, :offset] = V.T
        for name, cats in zip(self.categorical_columns, self.categories):
            text = columns[name].as_text()[rows]
            present = np.flatnonzero(text != None)  # noqa: E711 (elementwise); missing: all zeros
            k = _lookup(text[present], cats, rows[present],
                        lambda v: f"column {name!r}: unknown category {v!r}",
                        f"training saw {_list(cats)}")
            X[present, offset + k] = 1.0
            offset += len(cats)
        return X

    def _encode_target(self, column, rows):
        if self.task == "regression":
            if column.kind != "number":
                raise TableError(f"target column {self.target!r} holds text; the model is a "
                                 "regression")
            return column.values[rows].copy()
        by_text = sorted(self.classes)  # classes of numbers are in numeric order
        k = _lookup(column.as_text()[rows], by_text, rows,
                    lambda v: f"target column {self.target!r}: unknown class {v!r}",
                    f"the model knows {_list(self.classes)}")
        return np.array([self.classes.index(c) for c in by_text], np.int64)[k]

    def _check_fitted(self):
        if self.target is None:
            raise RuntimeError("the TablePreprocessor is not fitted: call fit first")

    # -- files ----------------------------------------------------------------------------------

    def to_dict(self):
        """Everything learnt, as a JSON-safe dict (floats exact: Python's JSON round-trips them)."""
        self._check_fitted()
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "feature_columns": list(self.feature_columns),
            "numeric_columns": list(self.numeric_columns),
            "means": [float(v) for v in self.means], "scales": [float(v) for v in self.scales],
            "categorical_columns": list(self.categorical_columns),
            "categories": [list(c) for c in self.categories],
            "missing": self.missing, "task": self.task, "target": self.target,
            "classes": None if self.classes is None else list(self.classes),
            "input_range": [[float(a), float(b)] for a, b in self.input_range],
        }

    @classmethod
    def from_dict(cls, d):
        """The preprocessor ``to_dict`` described; ValueError for anything inconsistent."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError("not a table preprocessor description")
        if d.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"table preprocessor version {d.get('format_version')!r}; this "
                             f"fastnn reads version {FORMAT_VERSION}")
        self = cls(missing=d["missing"], task=d["task"])
        if d["task"] is None:
            raise ValueError("task: missing")
        strings = lambda v, what: _check_strings(v, what)  # noqa: E731
        self.target = d["target"] if isinstance(d["target"], str) else None
        if self.target is None:
            raise ValueError("target: expected a column name")
        self.feature_columns = strings(d["feature_columns"], "feature_columns")
        self.numeric_columns = strings(d["numeric_columns"], "numeric_columns")
        self.categorical_columns = strings(d["categorical_columns"], "categorical_columns")
        if sorted(self.numeric_columns + self.categorical_columns) != sorted(self.feature_columns):
            raise ValueError("numeric_columns and categorical_columns do not make feature_columns")
        self.means = np.array(d["means"], np.float64)
        self.scales = np.array(d["scales"], np.float64)
        if self.means.shape != (len(self.numeric_columns),) or self.scales.shape != self.means.shape \
                or not np.isfinite(self.means).all() or not (self.scales > 0).all():
            raise ValueError("means/scales do not match numeric_columns")
        if not isinstance(d["categories"], list) or len(d["categories"]) != len(self.categorical_columns):
            raise ValueError("categories do not match categorical_columns")
        self.categories = [strings(c, "categories") for c in d["categories"]]
        if any(c != sorted(set(c)) or not c for c in self.categories):
            raise ValueError("categories: each list must be sorted, without repeats")
        if self.task == "classification":
            self.classes = strings(d["classes"], "classes")
            if len(set(self.classes)) != len(self.classes) or len(self.classes) < 2:
                raise ValueError("classes: expected at least two, without repeats")
        elif d["classes"] is not None:
            raise ValueError("classes: a regression has none")
        self.input_range = np.array(d["input_range"], np.float64).reshape(-1, 2)
        if len(self.input_range) != self.n_inputs:
            raise ValueError("input_range does not match the inputs")
        return self

    def __repr__(self):
        if self.target is None:
            return f"TablePreprocessor(missing={self.missing!r}, task={self.task!r})"
        return (f"<TablePreprocessor: {self.task} of {self.target!r} from "
                f"{len(self.numeric_columns)} numeric and {len(self.categorical_columns)} "
                f"categorical columns, {self.n_inputs} inputs>")


def _lookup(values, known, rows, what, hint):
    """The index in ``known`` (sorted text) of each of ``values`` (an object array of str);
    TableError naming the first value not in it and its row."""
    known = np.array(known, dtype=object)
    k = np.minimum(np.searchsorted(known, values), len(known) - 1)
    bad = known[k] != values
    if bad.any():
        i = int(np.argmax(bad))
        raise TableError(f"{what(values[i])} (row {int(rows[i]) + 1}); {hint}")
    return k.astype(np.int64)


def _guess_task(column, kept):
    if column.kind == "text":
        return "classification"
    values = column.values[kept]
    if np.all(values == np.round(values)) and len(np.unique(values)) <= MAX_CLASSES_GUESSED:
        return "classification"
    return "regression"


def _check_strings(value, what):
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what}: expected a list of strings")
    return list(value)


def _list(names, limit=8):
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# -- the helpers of training and prediction -------------------------------------------------------

def stratified_split(y, test_fraction, seed, stratify=True):
    """(train indices, test indices), both sorted: ``test_fraction`` of the rows drawn with
    ``seed``; with stratify (class labels y) every class keeps its share, at least one row of
    each class with two or more rows going to each side."""
    rng = np.random.default_rng(seed)
    n = len(y)
    if not stratify:
        order = rng.permutation(n)
        n_test = min(n - 1, max(1, int(round(n * test_fraction))))
        return np.sort(order[n_test:]), np.sort(order[:n_test])
    test = []
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        k = int(round(len(rows) * test_fraction))
        if len(rows) >= 2:
            k = min(len(rows) - 1, max(1, k))
        else:
            k = 0
        test.append(rows[:k])
    test = np.sort(np.concatenate(test)) if test else np.zeros(0, np.int64)
    train = np.setdiff1d(np.arange(n), test)
    return train, test


def _overflow_safe_unit(*arrays):
    """The unit to measure ``arrays`` (float64) in before summing them or their squares: their
    largest magnitude when it is beyond 1e100 (sums of squares overflow beyond about 1e154),
    else 1.0, by which dividing changes nothing."""
    largest = max((float(np.max(np.abs(a), initial=0.0)) for a in arrays), default=0.0)
    return largest if 1e100 < largest < math.inf else 1.0


def _mean_and_std(values):
    """The mean and population standard deviation of ``values`` (float64, 1-D), also for values
    so large that their sum or squares would overflow."""
    unit = _overflow_safe_unit(values)
    scaled = values / unit
    return float(scaled.mean()) * unit, float(scaled.std()) * unit


def target_scaling(y):
    """(mean, scale) that standardise regression targets y (scale 1 when y is constant)."""
    mean, std = _mean_and_std(np.asarray(y))
    return mean, (std if std > 0 and math.isfinite(std) else 1.0)


def unscale_outputs(network, mean, scale):
    """Fold y = output * scale + mean into the last Linear layer of ``network`` (trained on
    standardised targets), so that it outputs targets in their own units. Raises ValueError,
    leaving the network unchanged, when the targets' units do not fit the network's dtype."""
    from .layers import Linear
    last = [layer for layer in network.layers if isinstance(layer, Linear)][-1]
    dtype = last.W.dtype
    with np.errstate(over="ignore", invalid="ignore"):
        W = last.W * np.asarray(scale, dtype)
        b = last.b * np.asarray(scale, dtype) + np.asarray(mean, dtype)
    if not (np.isfinite(W).all() and np.isfinite(b).all()):
        raise ValueError(f"mean {mean:.4g}, scale {scale:.4g}: the targets' units make the output "
                         f"layer overflow {dtype.name} (at most {np.finfo(dtype).max:.4g})"
                         + ("; train a float64 network" if dtype == np.float32 else ""))
    np.copyto(last.W, W)
    np.copyto(last.b, b)


def regression_metrics(predicted, y):
    """{"rmse", "mae", "r2"} of predictions against targets (float64). R^2 of a constant target
    is 1.0 for exact predictions, else 0.0 (scikit-learn's ``r2_score`` convention,
    ``force_finite=True``), never NaN."""
    predicted = np.asarray(predicted, np.float64).reshape(-1)
    y = np.asarray(y, np.float64).reshape(-1)
    unit = _overflow_safe_unit(predicted, y)
    predicted, y = predicted / unit, y / unit
    err = predicted - y
    total = float(np.sum((y - y.mean()) ** 2))
    squared = float(np.sum(err ** 2))
    r2 = 1.0 - squared / total if total > 0 else (1.0 if squared == 0 else 0.0)
    return {"rmse": float(np.sqrt(np.mean(err ** 2))) * unit,
            "mae": float(np.mean(np.abs(err))) * unit, "r2": r2}
