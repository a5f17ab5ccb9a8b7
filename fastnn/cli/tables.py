"""The table side of the command line: the data of ``fastnn train --data``, the test data of
``fastnn evaluate --data`` and the inputs of ``fastnn predict`` for a model without a
preprocessor."""
import numpy as np

from ..tabular import (TablePreprocessor, read_arrays, read_table, stratified_split, target_scaling,
                      unscale_outputs)
from .options import set_default_lr
from .output import UserError


class TableData:
    """What ``fastnn train`` keeps about its table: the fitted preprocessor, the regression
    target's scaling, and the counts it reports."""

    def __init__(self, preprocessor, loss, n_rows, n_train, n_test, target_mean=0.0,
                 target_scale=1.0):
        self.preprocessor, self.loss = preprocessor, loss
        self.n_rows, self.n_train, self.n_test = n_rows, n_train, n_test
        self.target_mean, self.target_scale = target_mean, target_scale

    @property
    def n_outputs(self):
        if self.preprocessor.task == "regression" or self.loss == "bce":
            return 1
        return len(self.preprocessor.classes)

    def finish(self, network):
        """After training: a regression network, trained on standardised targets, is made to
        output the target's own units."""
        if self.preprocessor.task == "regression":
            try:
                unscale_outputs(network, self.target_mean, self.target_scale)
            except ValueError:  # targets near the dtype's limit, so outputs beyond it
                dtype = network.dtype.name
                raise UserError(f"target column {self.preprocessor.target!r}: its units (mean "
                                f"{self.target_mean:.4g}, scale {self.target_scale:.4g}) make "
                                f"the trained network's outputs overflow {dtype}"
                                f"{float64_hint(dtype)}") from None

    def summary(self):
        p = self.preprocessor
        return {"task": p.task, "target": p.target, "classes": p.classes,
                "rows_read": self.n_rows, "rows_dropped": p.n_dropped,
                "rows_imputed": p.n_imputed, "inputs": p.n_inputs}


def table_training_data(args, human):
    """((x_train, y_train), (x_test, y_test), (1.0, 0.0), TableData) for ``fastnn train --data``.

    The preprocessor learns its statistics and categories from every row of --data (the target
    is not used for them), then the rows are split; regression targets are standardised for
    training with the training rows' mean and deviation."""
    frame = read_table(args.data)
    target = _target_column(args)
    preprocessor = TablePreprocessor(missing=args.missing, task=args.task)
    X, y, kept = preprocessor.fit_transform(frame, target, ignore=args.ignore or ())
    if preprocessor.task == "regression":
        _check_target_fits(y, target, args.dtype)
    args.loss = _resolve_loss(args.loss, preprocessor)
    set_default_lr(args)
    classification = preprocessor.task == "classification"
    if args.test_data is not None:
        x_test, y_test, _ = preprocessor.transform_xy(read_table(args.test_data))
        x_train, y_train = X, y
    else:
        train, test = stratified_split(y, args.test_split, args.seed, stratify=classification)
        if len(train) == 0 or len(test) == 0:
            why = (f" (each of the {len(preprocessor.classes)} classes of {target!r} has one row)"
                   if classification and len(test) == 0 else "")
            raise UserError(f"--test-split {args.test_split:g} of {len(y)} rows leaves "
                            f"{len(train)} to train on and {len(test)} to test on{why}")
        x_train, y_train, x_test, y_test = X[train], y[train], X[test], y[test]
    if args.val_split and max(1, int(len(x_train) * args.val_split)) >= len(x_train):
        raise UserError(f"--val-split {args.val_split:g} leaves no training rows out of "
                        f"{len(x_train)}")
    table = TableData(preprocessor, args.loss, len(kept) + preprocessor.n_dropped, len(x_train),
                      len(x_test))
    if preprocessor.task == "regression":
        table.target_mean, table.target_scale = target_scaling(y_train)
        y_train = (y_train - table.target_mean) / table.target_scale
    if human:
        print(_describe_table(args, table), file=human, flush=True)
    return (x_train, y_train), (x_test, y_test), (1.0, 0.0), table


def _target_column(args):
    if args.target is not None:
        return args.target
    if args.data.lower().endswith(".npz"):
        return "y"
    raise UserError("--target COLUMN is required with a table: the column to predict")


def _check_target_fits(y, target, dtype):
    """A regression target beyond the network dtype's range would make the trained network
    output Inf: refused before training."""
    largest, limit = float(np.max(np.abs(y))), float(np.finfo(dtype).max)
    if largest > limit:
        raise UserError(f"target column {target!r}: values up to {largest:.4g} are outside the "
                        f"{dtype} range (±{limit:.4g}){float64_hint(dtype)}")


def float64_hint(dtype):
    return "; train with --dtype float64" if dtype == "float32" else ""


def check_inputs_fit(network, X, option, hint=""):
    """UserError naming ``option`` and the first column of inputs X that overflow the
    network's dtype once scaled (x * input_scale + input_shift), which Network.fit and predict
    refuse with a ValueError."""
    if X.size == 0 or X.dtype == np.uint8:
        return
    from .._range import observed_range
    limit = float(np.finfo(network.dtype).max)
    with np.errstate(over="ignore", invalid="ignore"):
        extremes = np.abs(observed_range(X, network.input_scale, network.input_shift))
    over = np.flatnonzero((extremes > limit).any(axis=1))
    if len(over):
        j, p = int(over[0]), network.preprocessor
        name, scaled = (p.input_names[j], "standardised") if p is not None else (f"x{j}", "scaled")
        raise UserError(f"{option}: column {name!r} reaches {extremes[j].max():.4g} once "
                        f"{scaled} for the model, beyond the {network.dtype.name} range "
                        f"(±{limit:.4g}){hint}")


def _resolve_loss(loss, preprocessor):
    target = preprocessor.target
    if preprocessor.task == "regression":
        if loss not in (None, "mse"):
            raise UserError(f"--loss {loss} is for classes; the target {target!r} is a regression "
                            "(use mse, or --task classification)")
        return "mse"
    if loss == "bce" and len(preprocessor.classes) != 2:
        raise UserError(f"--loss bce needs a target with two classes; {target!r} has "
                        f"{len(preprocessor.classes)} (use cross_entropy or mse)")
    return loss or "cross_entropy"


def _describe_table(args, table):
    p = table.preprocessor
    if p.task == "classification":
        shown = ", ".join(p.classes[:6]) + (", ..." if len(p.classes) > 6 else "")
        task = f"classification of {p.target!r} ({len(p.classes)} classes: {shown})"
    else:
        task = f"regression of {p.target!r}"
    missing = (f"{p.n_dropped:,} rows dropped for missing values" if args.missing == "drop" else
               f"{p.n_imputed:,} rows with missing values imputed, {p.n_dropped:,} without a "
               "target dropped")
    test = (f"test on {args.test_data}" if args.test_data is not None else
            f"{args.test_split:g} of the rows held out for the test"
            f"{' (stratified)' if p.task == 'classification' else ''}")
    return (f"read {args.data}: {table.n_rows:,} rows; {task}; {len(p.numeric_columns)} numeric "
            f"and {len(p.categorical_columns)} text columns -> {p.n_inputs} inputs; {missing}; "
            f"{test}: {table.n_train:,} training and {table.n_test:,} test rows")


# -- evaluate and predict: a saved model's data ---------------------------------------------------

def evaluation_data(args, network):
    """(X, y, what) to test ``network`` on: the table of --data through the model's
    preprocessor, or the X and y of an .npz for a model without one."""
    if args.data is None:
        raise UserError(f"{args.model} was trained on a table: give the test table with --data FILE")
    if network.preprocessor is not None:
        X, y, _ = network.preprocessor.transform_xy(read_table(args.data))
    else:
        X, y = model_arrays(args.data, network)
        if y is None:
            raise UserError(f"{args.data} has no array y to test against")
    check_inputs_fit(network, X, "--data")
    return X, y, "rows"


def model_arrays(path, network):
    """(X, y or None) for a model without a preprocessor: the arrays of an .npz."""
    if not path.lower().endswith(".npz"):
        raise UserError(f"the model was not trained on a table; give an .npz (array X) or an "
                        f"IDX directory, not {path}")
    X, y = read_arrays(path)
    if X.shape[1] != network.n_features:
        raise UserError(f"{path}: X has {X.shape[1]} columns; the model takes {network.n_features}")
    not_finite = ~np.isfinite(X)
    if not_finite.any():
        row, column = np.argwhere(not_finite)[0]
        raise UserError(f"{path}: X holds {int(not_finite.sum())} NaN or infinite value(s), the "
                        f"first in row {row + 1}, column x{column}; the model takes finite numbers")
    return X, y
