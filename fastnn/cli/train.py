"""``fastnn train``: train an MLP on MNIST, an IDX dataset or a table, test it, save it."""
import time

from . import checkpoint
from .data import training_data
from .describe import (arch_text, describe, early_stopping_line, epoch_printer, is_regression,
                       plural, test_scores, training_line)
from .interrupt import interrupt_for_tests, sigterm_as_interrupt
from .options import (AUTO_THREADS, DEFAULTS, EXPONENTIAL_GAMMA, NUM_CLASSES, STEP_FRACTION,
                      STEP_GAMMA, HelpFormatter, RaisingParser, add_output_flags, add_run_options,
                      check_train_args, given_options, thread_count)
from .output import PROG, UserError, human_stream, range_warnings_as_lines, report, show_progress


def add_parser(commands):
    d = DEFAULTS
    p = commands.add_parser(
        "train", help="train an MLP on MNIST, an IDX dataset or a table (CSV, TSV, Parquet, NPZ) "
                      "and test it",
        description="Train an MLP and report its test accuracy (RMSE, MAE and R^2 for a "
                    "regression). With no options: "
                    f"{arch_text(d['hidden'])} {d['activation']} MLP, SGD (lr {d['sgd_lr']}, "
                    f"momentum {d['momentum']}), batch {d['batch_size']}, {d['epochs']} epochs, "
                    f"{d['schedule']} schedule, seed {d['seed']}: about 98.3 % on the MNIST test "
                    "set in about 4 s on 2 cores.",
        formatter_class=HelpFormatter)
    add_arguments(p)


def add_arguments(p):
    """The options of ``fastnn train``."""
    groups = add_run_options(p)
    groups["training"].add_argument(
        "--threads", type=thread_count, metavar="N",
        help="use exactly N threads for fastnn's kernels and BLAS (at most the cores this process "
             "may use: more is capped with a warning). The default, 'auto', takes "
             "$FASTNN_NUM_THREADS, $OMP_NUM_THREADS or the cores this process may use, and lets "
             "training drop to one thread while the machine is busy. Either way a run repeats "
             "bit for bit for the same --seed, on any thread count")

    output = p.add_argument_group("output")
    output.add_argument("--save", metavar="PATH",
                        help="save the trained model (fastnn.load reads it); if the run is "
                             "interrupted (Ctrl-C), a checkpoint of the last completed epoch is "
                             "saved there instead, for --resume")
    output.add_argument("--resume", metavar="CHECKPOINT",
                        help="continue the interrupted run saved in CHECKPOINT with its own options "
                             "(only --data-dir, --data, --test-data, --threads, --save, --plot, "
                             "--json and --quiet may be given, and --epochs to extend the run; "
                             "other options must match); the model is saved to CHECKPOINT unless "
                             "--save says otherwise")
    output.add_argument("--plot", metavar="PATH",
                        help="write loss and accuracy curves as a PNG (needs matplotlib)")
    add_output_flags(output, "the result (test accuracy, loss, timings, the configuration)")
    return p


def parse_train_options(options):
    """The checked args of ``fastnn train OPTIONS`` (a list of str); UserError when one is bad."""
    args = _train_parser().parse_args(options)
    args.given = given_options(_train_parser(), options)
    check_train_args(args)
    return args


def _train_parser():
    return add_arguments(RaisingParser(prog=f"{PROG} train"))


def run(args, started):
    resumed = checkpoint.prepare_resume(args) if args.resume else None
    check_train_args(args)
    if args.plot:
        from ..plotting import require_matplotlib  # fail before training, not after
        require_matplotlib()
    human = human_stream(args)
    with sigterm_as_interrupt():
        result, line = train(args, started, human, resumed)
    report(args, result, line)
    return 0


def train(args, started, human=None, resumed=None):
    """Run ``fastnn train`` with parsed and checked ``args``: (the JSON result, the final line
    for people). ``human``: the stream for progress lines, or None."""
    (x_train, y_train), (x_test, y_test), (scale, shift), table = training_data(args, human)
    fingerprint = checkpoint.data_fingerprint(x_train, y_train, scale, shift) if args.save else None
    if resumed is None:
        import fastnn
        n_outputs = NUM_CLASSES if table is None else table.n_outputs
        network = _network(args, x_train.shape[1], n_outputs, scale, shift)
        network.preprocessor = None if table is None else table.preprocessor
        optimizer, state, history = _optimizer(args), None, fastnn.History()
        seconds_before = 0.0
    else:
        network, optimizer, state, history = checkpoint.restore(args, resumed, fingerprint)
        seconds_before = resumed["train_seconds"]
    if table is not None:  # a test table's values may lie far outside the training table's
        from .tables import check_inputs_fit, float64_hint
        check_inputs_fit(network, x_test, "--test-data" if args.test_data else "--data",
                         float64_hint(args.dtype))
    checkpointer = (checkpoint.Checkpointer(args, network, optimizer, fingerprint, history,
                                            seconds_before) if args.save else None)
    if human:
        print(training_line(args, network, len(x_train), history.epochs), file=human, flush=True)
    callbacks = ([checkpointer] if checkpointer else []) + (
        [epoch_printer(args.epochs, human)] if human else []) + interrupt_for_tests()

    fit_started = time.perf_counter()
    try:
        history.extend(network.fit(
            x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
            optimizer=optimizer, validation_split=args.val_split,
            early_stopping=args.early_stopping, seed=args.seed, callbacks=callbacks,
            progress=show_progress(args), schedule=_schedule(args), resume=state))
        train_seconds = time.perf_counter() - fit_started + seconds_before
        if table is not None:
            table.finish(network)  # regression: outputs back in the target's units
        with range_warnings_as_lines():
            scores, score_text = test_scores(network, x_test, y_test)
        if human and args.early_stopping:
            print(early_stopping_line(args, history), file=human, flush=True)
        _write_outputs(args, network, history, score_text, human)
    except KeyboardInterrupt as exc:
        raise checkpoint.interrupted(args, checkpointer, exc) from None

    total_seconds = time.perf_counter() - started
    result = {
        **scores, "epochs": history.epochs,
        "train_seconds": train_seconds,
        "seconds_per_epoch": train_seconds / history.epochs if history.epochs else 0.0,
        "total_seconds": total_seconds, "parameters": network.n_parameters(),
        "train_samples": len(x_train), "test_samples": len(x_test),
        "best_epoch": history.best_epoch, "stopped_early": history.stopped_early,
        "config": _config_dict(args),
        "history": history.as_dict(),
    }
    if table is not None:
        result.update(table.summary())
    if resumed is not None:
        result["resumed_from_epoch"] = state["epoch"]
    timing = f"{plural(history.epochs, 'epoch')} in {train_seconds:.1f} s, {total_seconds:.1f} s in all"
    if resumed is not None:
        timing = (f"{plural(history.epochs, 'epoch')}, {history.epochs - state['epoch']} of them in this "
                  f"run: {train_seconds:.1f} s of training in all, this command {total_seconds:.1f} s")
    return result, f"{score_text}  ({timing})"


def _network(args, n_inputs, n_outputs, scale, shift):
    import fastnn
    try:
        return fastnn.Network(_layers(args, n_inputs, n_outputs), loss=_loss(args),
                              dtype=args.dtype, input_scale=scale, input_shift=shift,
                              seed=args.seed)
    except MemoryError:
        raise UserError(_too_big_for_memory(args, n_inputs, n_outputs)) from None


def _too_big_for_memory(args, n_inputs, n_outputs):
    widths = [n_inputs, *args.hidden, n_outputs]
    parameters = sum((a + 1) * b for a, b in zip(widths, widths[1:]))
    gib = parameters * {"float32": 4, "float64": 8}[args.dtype] / 2 ** 30
    return (f"--hidden {' '.join(map(str, args.hidden)) or 0}: not enough memory for a "
            f"{'-'.join(map(str, widths))} network: its {parameters:,} parameters take "
            f"{gib:,.1f} GiB in {args.dtype}, and training needs more; give smaller widths")


def _layers(args, n_inputs, n_outputs=NUM_CLASSES):
    import fastnn
    activation = getattr(fastnn, fastnn.activations.get(args.activation).layer)
    layers, width = [], n_inputs
    for size in args.hidden:
        layers += [fastnn.Linear(width, size, init=args.init, dtype=args.dtype), activation()]
        if args.dropout:
            layers.append(fastnn.Dropout(args.dropout))
        width = size
    layers.append(fastnn.Linear(width, n_outputs, init=args.init, dtype=args.dtype))
    return layers


def _optimizer(args):
    import fastnn
    if args.optimizer == "adam":
        return fastnn.Adam(lr=args.lr, weight_decay=args.weight_decay)
    if args.optimizer == "adamw":
        return fastnn.AdamW(lr=args.lr, weight_decay=args.weight_decay)
    return fastnn.SGD(lr=args.lr, momentum=args.momentum, nesterov=args.nesterov,
                      weight_decay=args.weight_decay)


def _schedule(args):
    import fastnn
    if args.schedule == "step":
        return fastnn.StepLR(max(1, args.epochs // STEP_FRACTION), gamma=STEP_GAMMA)
    if args.schedule == "exponential":
        return fastnn.ExponentialLR(EXPONENTIAL_GAMMA)
    if args.schedule == "cosine":
        return fastnn.CosineLR(args.epochs)
    return None


def _loss(args):
    from .. import losses, loss_registry
    return losses.LOSS_TYPES[loss_registry.get(args.loss, "--loss").loss_class]()


def _write_outputs(args, network, history, score_text, human):
    if args.save:
        network.save(args.save)
        if human:
            print(f"saved to {args.save}", file=human, flush=True)
    if args.plot:
        from ..plotting import save_learning_curves
        from .. import loss_registry
        loss_name = loss_registry.get(args.loss, "--loss").title
        if is_regression(network) and network.preprocessor is not None:
            loss_name += " (standardised target)"
        save_learning_curves(history, args.plot, loss_name=loss_name,
                             title=f"{describe(network)}: {score_text.split('  ')[0]}")


def _config_dict(args):
    from .._threads import get_num_threads
    return {
        "dataset": args.dataset, "data_dir": args.data_dir, "limit": args.limit,
        "val_split": args.val_split, "scaling": args.scaling, "hidden": args.hidden,
        "activation": args.activation, "init": args.init, "dropout": args.dropout,
        "dtype": args.dtype, "epochs": args.epochs, "batch_size": args.batch_size,
        "optimizer": args.optimizer, "lr": args.lr, "momentum": args.momentum,
        "nesterov": args.nesterov, "weight_decay": args.weight_decay, "schedule": args.schedule,
        "early_stopping": args.early_stopping, "seed": args.seed, "threads": get_num_threads(),
        "data": args.data, "target": args.target, "ignore": args.ignore, "task": args.task,
        "missing": args.missing,
        "test_split": args.test_split, "test_data": args.test_data, "loss": args.loss,
        "adaptive_threads": args.threads in (None, AUTO_THREADS),
        "save": args.save, "plot": args.plot,
    }


