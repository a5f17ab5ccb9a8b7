"""Checkpoints of ``fastnn train --save``: an interrupted run saves its last completed epoch
(weights, optimizer state, generator states, history, its options and a fingerprint of its
data), and ``fastnn train --resume`` continues it, to its own --epochs or to more."""
import hashlib
import os
import shlex
import time

from .interrupt import Interrupted, Terminated, signals_ignored
from .options import AUTO_THREADS
from .output import PROG, UserError, finite_or_null, print_warning

CHECKPOINT_FORMAT = "fastnn-train-checkpoint"
CHECKPOINT_VERSION = 1
# The options of `fastnn train` a checkpoint records; `--resume` runs with them again.
RUN_OPTIONS = ("dataset", "data_dir", "limit", "val_split", "scaling", "hidden", "activation",
               "init", "dropout", "dtype", "epochs", "batch_size", "optimizer", "lr", "momentum",
               "nesterov", "weight_decay", "schedule", "early_stopping", "seed")
# Options added later, with the value a checkpoint that lacks them was trained with.
LATER_RUN_OPTIONS = {"data": None, "target": None, "ignore": None, "task": None, "missing": "drop",
                     "test_split": None, "test_data": None, "loss": "cross_entropy"}
# Paths: a resumed run may find its files elsewhere (the data fingerprint is checked).
PATH_OPTIONS = ("data_dir", "data", "test_data")


class Checkpointer:
    """An epoch-end callback keeping in memory what a checkpoint of that epoch needs (weights,
    optimizer state, generator states, history), so that an interrupted run can save the last
    completed epoch rather than the half-trained weights of the current one."""

    def __init__(self, args, network, optimizer, fingerprint, previous, seconds_before):
        self.args, self.network, self.optimizer = args, network, optimizer
        self.fingerprint = fingerprint
        self.history = _copy_history(previous)
        self.started = time.perf_counter()
        self.seconds_before = seconds_before
        self.snapshot = None

    def __call__(self, epoch_index, logs, network):
        self.history.append(logs)
        snapshot = {
            "epoch": epoch_index + 1,
            "params": [p.copy() for p in network.parameters()],
            "optimizer": self.optimizer.state_dict(),
            "state": network.training_state(),
            "history": self.history.as_dict(),
            "train_seconds": self.seconds_before + time.perf_counter() - self.started,
        }
        self.snapshot = snapshot  # one assignment: an interrupt never leaves it half-made

    def write(self, path):
        """Save the last snapshot to ``path`` (atomically); returns its epoch."""
        from ..optim import optimizer_from_state
        snap = self.snapshot
        for dst, src in zip(self.network.parameters(), snap["params"]):
            _copyto(dst, src)
        config = {name: getattr(self.args, name) for name in RUN_OPTIONS + tuple(LATER_RUN_OPTIONS)}
        for name in PATH_OPTIONS:
            if config[name] is not None:
                config[name] = os.path.abspath(config[name])
        from .._threads import get_num_threads
        extra = {"checkpoint": {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": config,
            "threads": get_num_threads(),
            "adaptive_threads": self.args.threads in (None, AUTO_THREADS),
            "data": self.fingerprint, "state": snap["state"],
            "history": finite_or_null(snap["history"]),  # NaN accuracies of a regression
            "train_seconds": snap["train_seconds"],
        }}
        self.network.save(path, optimizer=optimizer_from_state(snap["optimizer"]), extra=extra)
        return snap["epoch"]


def _copyto(dst, src):
    import numpy as np
    np.copyto(dst, src)


def _copy_history(history):
    from ..history import History
    return History.from_dict(history.as_dict())


def interrupted(args, checkpointer, exc):
    """The Interrupted exception to exit with, after saving a checkpoint when one can be."""
    status = 143 if isinstance(exc, Terminated) else 130
    what = "terminated" if status == 143 else "interrupted"
    if checkpointer is None:
        return Interrupted(f"{what}; nothing saved (with --save PATH an interrupted run saves a "
                           "checkpoint to resume)", status)
    if checkpointer.snapshot is None:
        return Interrupted(f"{what} before the first epoch ended; nothing saved", status)
    with signals_ignored():  # a second Ctrl-C must not cut the checkpoint short
        epoch = checkpointer.write(args.save)
    return Interrupted(f"{what}; saved a checkpoint of epoch {epoch}/{args.epochs} to {args.save}; "
                       f"continue with: {PROG} train --resume {shlex.quote(args.save)}", status)


def data_fingerprint(x, y, scale, shift):
    """What identifies the training data of a run: count, SHA-256 of images and labels, scaling."""
    import numpy as np
    digest = hashlib.sha256()
    for a in (x, y):
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(memoryview(a).cast("B"))
    return {"train_samples": int(len(x)), "sha256": digest.hexdigest(),
            "input_scale": float(scale), "input_shift": float(shift)}


def prepare_resume(args):
    """Read the checkpoint named by --resume and put its options into ``args``; returns it."""
    path = args.resume
    if not os.path.isfile(path):
        raise UserError(f"--resume: checkpoint not found: {path}")
    from ..serialization import load_checkpoint
    network, optimizer, extra = load_checkpoint(path)
    ckpt = (extra or {}).get("checkpoint")
    if (not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or optimizer is None
            or not isinstance(ckpt.get("config"), dict)):
        raise UserError(f"--resume: {path} is a model but not a training checkpoint (those are "
                        "written when a run with --save is interrupted)")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise UserError(f"--resume: {path} is a checkpoint of version {ckpt.get('version')!r}; "
                        f"this fastnn reads version {CHECKPOINT_VERSION}")
    config = {**LATER_RUN_OPTIONS, **ckpt["config"]}
    given = getattr(args, "given", set())
    for name in RUN_OPTIONS + tuple(LATER_RUN_OPTIONS):
        if name not in config:
            raise UserError(f"--resume: {path} lacks the option {name!r}")
        if name == "epochs" and name in given:
            done = (ckpt.get("state") or {}).get("epoch")
            if isinstance(done, int) and args.epochs < done:
                raise UserError(f"--resume: --epochs {args.epochs} is fewer than the {done} epochs "
                                f"{path} has already trained")
            continue  # a resumed run may be extended to more epochs
        if name in given and name not in PATH_OPTIONS:
            value = getattr(args, name)
            if name == "hidden" and value == [0]:
                value = []
            if value != config[name]:
                raise UserError(f"--resume: --{name.replace('_', '-')} {_show(value)} differs from "
                                f"the checkpoint's {_show(config[name])}; a resumed run keeps its "
                                "options")
        if name not in PATH_OPTIONS or name not in given:
            setattr(args, name, config[name])
    threads = None
    if args.threads in (None, AUTO_THREADS):  # else the --threads given wins
        threads = _resume_threads(path, ckpt)
        if args.threads is None and not ckpt.get("adaptive_threads", True):
            args.threads = threads  # pinned, as the interrupted run was
    if args.save is None:
        args.save = path
    return {"path": path, "network": network, "optimizer": optimizer, "checkpoint": ckpt,
            "train_seconds": float(ckpt.get("train_seconds") or 0.0), "threads": threads}


def _resume_threads(path, ckpt):
    """The thread count of the interrupted run, within the limits the default count honours
    ($FASTNN_NUM_THREADS, $OMP_NUM_THREADS, the cores this process may use), with a warning when
    they lower it; None when the checkpoint records no count."""
    threads = ckpt.get("threads")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        return None
    from .._cpulimits import default_threads
    limit, source, _ = default_threads()  # its warnings were given when fastnn loaded
    if limit >= threads:
        return threads
    print_warning(f"--resume: {path} was trained on {threads} threads; this run uses {limit} "
                  f"(limited by {source}), so its weights may differ from those of the "
                  "uninterrupted run; --threads N sets the count")
    return limit


def _show(value):
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def restore(args, resumed, fingerprint):
    """(network, optimizer, training state, History so far) of the checkpoint, once the data
    is known to be what the run was trained on."""
    from ..history import History
    ckpt = resumed["checkpoint"]
    if fingerprint != ckpt.get("data"):
        raise UserError(f"--resume: the training data differs from the data the run in "
                        f"{resumed['path']} was trained on (different files, --limit or "
                        "--scaling)")
    if resumed["threads"] is not None and args.threads in (None, AUTO_THREADS):
        # The interrupted run's count (within this process's limits), still adaptive as it was.
        from .._native import core
        core.set_kernel_threads(resumed["threads"])
    try:
        previous = History.from_dict(ckpt.get("history"))
    except (TypeError, ValueError) as exc:
        raise UserError(f"--resume: {resumed['path']}: damaged history ({exc})") from None
    state = ckpt.get("state")
    if not isinstance(state, dict) or state.get("epoch") != previous.epochs:
        raise UserError(f"--resume: {resumed['path']}: the training state does not match its history")
    return resumed["network"], resumed["optimizer"], state, previous
