"""What the commands say about a network and a run, for people: its name ("784-256-10 relu
MLP"), the training line, the per-epoch lines, the early-stopping line, and the test scores.
Standard library only at import."""
import math

from .options import AUTO_THREADS, NUM_CLASSES


def arch_text(hidden):
    return "-".join(str(n) for n in [784, *hidden, NUM_CLASSES] if n)


def describe(network):
    from ..layers import Activation, Linear
    widths = [network.n_features] + [l.out_features for l in network.layers if isinstance(l, Linear)]
    activations = sorted({l.name for l in network.layers if isinstance(l, Activation)})
    if activations:
        kind = f"{'/'.join(activations)} MLP"
    else:  # one Linear layer: named by its loss
        from ..losses import MSE, BinaryCrossEntropy
        kind = ("linear regression" if isinstance(network.loss, MSE) else
                "logistic regression" if isinstance(network.loss, BinaryCrossEntropy) else
                "softmax regression")
    return f"{'-'.join(map(str, widths))} {kind}"


def plural(count, noun):
    return f"{count} {noun}{'' if count == 1 else 's'}"


def init_text(network):
    """The initialisers the network's Linear layers were drawn with: the network resolves a
    default from the activation after each layer, so the output layer's may differ."""
    from ..layers import Linear
    *hidden, output = [l.init_name for l in network.layers if isinstance(l, Linear)]
    if all(name == output for name in hidden):
        return f"{output} init"
    return f"{'/'.join(sorted(set(hidden)))} init ({output} for the output layer)"


def describe_training(args, network):
    parts = [f"{args.optimizer} lr {args.lr:g}"]
    if args.optimizer == "sgd" and args.momentum:
        parts[0] += f" {'nesterov ' if args.nesterov else ''}momentum {args.momentum:g}"
    if args.weight_decay:
        parts[0] += f" weight decay {args.weight_decay:g}"
    parts += [f"batch {args.batch_size}", plural(args.epochs, "epoch")]
    if args.schedule != "none":
        parts.append(f"{args.schedule} schedule")
    if args.val_split:
        parts.append(f"{args.val_split:g} held out for validation")
    parts += [init_text(network),
              f"dropout {args.dropout:g}" if args.dropout else "no dropout", args.dtype,
              "columns standardised" if args.data is not None else
              f"pixels {'/255' if args.scaling == 'unit' else 'standardised'}",
              f"loss {args.loss}"]
    return ", ".join(parts)


def training_line(args, network, n_train, done):
    from .._threads import get_num_threads
    threads = (f"{plural(get_num_threads(), 'thread')}"
               f"{' (auto)' if args.threads in (None, AUTO_THREADS) else ''}")
    what = f"{describe(network)} ({network.n_parameters():,} parameters)"
    if args.resume:
        return (f"resuming {what} from {args.resume} after epoch {done}/{args.epochs}: "
                f"{describe_training(args, network)}, {threads}")
    rows = "rows" if args.data is not None else "images"
    return f"training {what} on {n_train:,} {rows}: {describe_training(args, network)}, {threads}"


def epoch_printer(epochs, stream):
    width = len(str(epochs))

    def print_epoch(index, logs, network):
        parts = [f"epoch {index + 1:>{width}}/{epochs}", f"loss {logs['train_loss']:.4f}"]
        if not math.isnan(logs["train_accuracy"]):  # NaN: a regression has no accuracy
            parts.append(f"acc {100 * logs['train_accuracy']:.2f}%")
        if "val_loss" in logs:
            parts.append(f"val_loss {logs['val_loss']:.4f}")
            if not math.isnan(logs["val_accuracy"]):
                parts.append(f"val_acc {100 * logs['val_accuracy']:.2f}%")
        parts += [f"lr {logs['lr']:.3g}", f"{logs['seconds']:.2f} s"]
        print("  ".join(parts), file=stream, flush=True)

    return print_epoch


def early_stopping_line(args, history):
    watched = "validation loss" if args.val_split else "training loss"
    if history.stopped_early:
        what = (f"early stopping: no lower {watched} for {args.early_stopping} epochs, stopped "
                f"after epoch {history.epochs}")
    else:
        what = f"early stopping: ran all {args.epochs} epochs"
    return f"{what}; kept the weights of epoch {history.best_epoch} (lowest {watched})"


def test_scores(network, x_test, y_test):
    """({JSON keys: test scores}, the line saying them): accuracy and loss of a classifier,
    RMSE, MAE, R^2 (and the MSE as loss) of a regression."""
    if is_regression(network):
        from ..tabular import regression_metrics
        m = regression_metrics(network.predict(x_test), y_test)
        return ({"test_rmse": m["rmse"], "test_mae": m["mae"], "test_r2": m["r2"],
                 "test_loss": m["rmse"] * m["rmse"]},  # inf, not OverflowError, past 1.3e154
                f"test RMSE {m['rmse']:.4g}  MAE {m['mae']:.4g}  R^2 {m['r2']:.4f}")
    test_loss, test_accuracy = network.evaluate(x_test, y_test)
    return ({"test_accuracy": test_accuracy, "test_loss": test_loss},
            f"test accuracy {100 * test_accuracy:.2f}%  loss {test_loss:.4f}")


def is_regression(network):
    """A model whose outputs are values, not classes: a regression table, or MSE on one output."""
    from ..losses import MSE
    if network.preprocessor is not None:
        return network.preprocessor.task == "regression"
    return isinstance(network.loss, MSE) and network.n_outputs == 1
