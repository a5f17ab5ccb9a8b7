"""The commands that use a saved model: ``fastnn evaluate`` (test it), ``fastnn predict`` (one
prediction per input row, as CSV) and ``fastnn export`` (an ONNX graph). Standard library only
at import."""
import csv
import os
import sys
import time

from .data import load_data
from .describe import describe, is_regression, test_scores
from .options import (NUM_CLASSES, add_output_flags, add_threads_option, check_exists,
                      check_writable_location, idx_inputs, set_threads)
from .output import UserError, range_warnings_as_lines, report


def add_parsers(commands):
    _add_evaluate(commands)
    _add_predict(commands)
    _add_export(commands)


def _add_evaluate(commands):
    p = commands.add_parser(
        "evaluate", help="test a saved model",
        description="Load a model saved by 'fastnn train --save' (or Network.save) and report "
                    "its accuracy and loss on the test set (RMSE, MAE and R^2 for a "
                    "regression).")
    p.add_argument("model", metavar="MODEL", help="model file")
    p.add_argument("--data-dir", metavar="DIR",
                   help="use the test files of the IDX dataset in DIR instead of MNIST's")
    p.add_argument("--data", metavar="FILE",
                   help="test on this table (.csv, .tsv, .parquet or .npz with the target "
                        "column; required for a model trained on a table)")
    add_threads_option(p)
    add_output_flags(p, "test_accuracy and test_loss (test_rmse, test_mae, test_r2 and "
                         "test_loss for a regression)")


def _add_predict(commands):
    p = commands.add_parser(
        "predict", help="predict the rows of a table with a saved model",
        description="Load a model saved by 'fastnn train --save' and write one prediction per "
                    "input row, in order, as CSV: the label names of a classifier, the values of "
                    "a regression. A model of a table reads its raw columns (the target column "
                    "may be there or not); other models read an .npz (array X) or the test "
                    "images of an IDX directory.")
    p.add_argument("model", metavar="MODEL", help="model file")
    p.add_argument("--data", metavar="FILE", required=True,
                   help="the rows to predict: .csv, .tsv, .parquet, .npz or an IDX directory")
    p.add_argument("--output", metavar="OUT.csv",
                   help="write the predictions here (atomically) instead of to stdout")
    p.add_argument("--proba", action="store_true",
                   help="add one column of probabilities per class (classifiers)")
    add_threads_option(p)


def _add_export(commands):
    p = commands.add_parser(
        "export", help="write a saved model as an ONNX graph",
        description="Convert a model saved by 'fastnn train --save' (or Network.save) to ONNX: "
                    "the input scaling, the layers and the loss's head (softmax probabilities and "
                    "the label for classifiers). Needs the onnx extra: pip install \".[onnx]\".")
    p.add_argument("model", metavar="MODEL", help="model file")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="output format")
    p.add_argument("--output", required=True, metavar="PATH", help="file to write (atomically)")


def evaluate(args, started):
    _check_model_file(args.model)
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise UserError(f"--data-dir: no such directory: {args.data_dir}")
    if args.data is not None and args.data_dir is not None:
        raise UserError("give --data or --data-dir, not both")
    if args.data is not None:
        check_exists("--data", args.data)
        if os.path.isdir(args.data):
            args.data_dir, args.data = args.data, None
    set_threads(args.threads)
    network = load_usable_model(args.model)
    if args.data is not None or network.preprocessor is not None:
        from .tables import evaluation_data
        x_test, y_test, what = evaluation_data(args, network)
    else:
        x_test, y_test = load_data(args.data_dir, subset="test")
        if len(x_test) == 0:
            raise UserError(f"no test images in {args.data_dir or 'the MNIST copy'}")
        _check_model_fits(network, x_test)
        what = "images"
    with range_warnings_as_lines():
        scores, score_text = test_scores(network, x_test, y_test)
    result = {**scores, "model": args.model,
              "test_samples": len(x_test), "parameters": network.n_parameters(),
              "seconds": time.perf_counter() - started}
    report(args, result, f"{score_text}  ({len(x_test):,} {what}, {describe(network)})")
    return 0


def _check_model_file(path):
    if os.path.isdir(path):
        raise UserError(f"{path} is a directory, not a model file (one saved by "
                        "'fastnn train --save')")
    if not os.path.isfile(path):
        raise UserError(f"model file not found: {path}")


def _check_model_fits(network, x_test):
    from ..losses import MSE, SoftmaxCrossEntropy
    if not isinstance(network.loss, (SoftmaxCrossEntropy, MSE)) or network.n_outputs < 2:
        raise UserError(f"the model's loss is {type(network.loss).__name__} with "
                        f"{network.n_outputs} output(s); the {NUM_CLASSES} classes of an IDX "
                        "dataset need a classifier trained with cross_entropy or mse")
    if network.n_features != x_test.shape[1]:
        raise UserError(f"the model expects {network.n_features} inputs per example but the test "
                        f"images have {x_test.shape[1]} pixels")
    if network.n_outputs < NUM_CLASSES:
        raise UserError(f"the model has {network.n_outputs} outputs; the labels need {NUM_CLASSES}")


def predict(args, started):
    """``fastnn predict MODEL --data FILE [--output OUT.csv] [--proba]``."""
    _check_model_file(args.model)
    if args.output is not None:
        check_writable_location("--output", args.output,
                                [("the model", args.model), ("--data", args.data),
                                 *idx_inputs(args.data, subset="test")])
    check_exists("--data", args.data)
    import numpy as np

    set_threads(args.threads)
    network = load_usable_model(args.model)
    X = _prediction_inputs(args, network)
    header, columns = ["prediction"], []
    with range_warnings_as_lines():
        if is_regression(network):
            if args.proba:
                raise UserError("--proba: the model is a regression; it has no classes")
            columns.append(network.predict(X)[:, 0])
        else:
            names = _class_names(network)
            columns.append(np.asarray(names, dtype=object)[_class_indices(network, X)])
            if args.proba:
                header += [f"proba_{name}" for name in names]
                proba = _probabilities(network, X)
                columns += [proba[:, k] for k in range(proba.shape[1])]
    _write_csv(args.output, header, columns)  # a reader leaving stdout early: see main()
    if args.output is not None:
        print(f"wrote {len(X):,} predictions to {args.output}", flush=True)
    return 0


def _prediction_inputs(args, network):
    from .tables import check_inputs_fit, model_arrays
    if network.preprocessor is not None:
        from ..tabular import read_table
        if os.path.isdir(args.data):
            raise UserError(f"the model takes the columns of a table ({args.data} is a directory)")
        X = network.preprocessor.transform(read_table(args.data))
    elif os.path.isdir(args.data):
        from ..datasets import load_idx
        X, _ = load_idx(args.data, subset="test")
        if X.shape[1] != network.n_features:
            raise UserError(f"{args.data}: the images have {X.shape[1]} pixels; the model takes "
                            f"{network.n_features} inputs")
    else:
        X = model_arrays(args.data, network)[0]
    check_inputs_fit(network, X, "--data")
    return X


def _class_names(network):
    p = network.preprocessor
    if p is not None:
        return p.classes
    return [str(k) for k in range(max(2, network.n_outputs))]


def _class_indices(network, X):
    import numpy as np

    from ..losses import MSE
    if isinstance(network.loss, MSE):  # a classifier trained with mse: the largest output
        return np.argmax(network.predict(X), axis=1)
    return network.predict(X)


def _probabilities(network, X):
    import numpy as np

    from ..losses import MSE, BinaryCrossEntropy
    if isinstance(network.loss, MSE):
        raise UserError("--proba: the model was trained with mse, whose outputs are not "
                        "probabilities (train with --loss cross_entropy or bce)")
    p = network.predict_proba(X)
    if isinstance(network.loss, BinaryCrossEntropy):
        p = np.stack([1 - p, p], axis=1)
    return p


def _write_csv(path, header, columns):
    """The columns as CSV (numbers in their shortest exact form) to ``path`` atomically, or to
    stdout when path is None."""
    from .._atomic import atomic_write
    text = [[str(v) for v in c] for c in columns]

    def write(f):
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(zip(*text))

    if path is None:
        write(sys.stdout)
        sys.stdout.flush()
        return
    with atomic_write(path, "w") as f:
        write(f)


def load_usable_model(path):
    """The network saved at ``path``; UserError for the checkpoint of an interrupted table
    regression, whose outputs are standardised targets until its run is finished."""
    from ..serialization import interrupted_regression, load_checkpoint
    network = load_checkpoint(path)[0]  # fastnn.load would also warn about such a checkpoint
    if interrupted_regression(network):
        raise UserError(f"{path} is the checkpoint of an interrupted regression run, whose "
                        "outputs are in standardised units until training ends; finish it with "
                        f"fastnn train --resume {path}")
    return network


def export(args, started):
    _check_model_file(args.model)
    check_writable_location("--output", args.output, [("the model", args.model)])
    from ..export_onnx import save_onnx
    network = load_usable_model(args.model)
    save_onnx(network, args.output)
    print(f"saved the ONNX graph of {args.model} to {args.output}", flush=True)
    return 0
