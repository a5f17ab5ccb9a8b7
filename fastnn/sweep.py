"""``fastnn sweep``: a grid of ``fastnn train`` runs, in this process, in local worker processes
(joblib's loky) or on a Dask cluster (dask.distributed).

Every option of ``fastnn train`` may take several values; the grid is their Cartesian product and
each trial runs ``fastnn train`` with one combination (the same function, so a trial gives what
``fastnn train`` gives with those options, wherever it runs). A trial whose options are refused,
whose training diverges or that runs out of memory is reported as failed; the others go on (when
every trial failed, the exit status is 1). With ``--output DIR`` each finished trial is written
at once (DIR/<id>/trial.json, and the model with --save-models), so an interrupted sweep keeps
them and ``--resume DIR`` runs the rest (the missing and the failed trials).

Standard library only at import; numpy, joblib, dask and matplotlib load when used.
"""
import argparse
import hashlib
import itertools
import json
import math
import os
import shlex
import tempfile
import time
import warnings

from ._argtypes import positive_int
from .cli.data import loaded_data_kept
from .cli.interrupt import Interrupted, Terminated
from .cli.options import (RaisingParser, add_output_flags, add_run_options, check_writable_location,
                          idx_inputs)
from .cli.output import (PROG, UserError, finite_or_null, human_stream, print_error,
                         print_warning, user_error_message)
from .cli.train import parse_train_options, train
from .errors import MissingExtra

FORMAT = "fastnn-sweep"
VERSION = 2  # 2: the data paths are absolute and the data files' sizes and SHA-256 are recorded
# Options of `fastnn train` that the sweep sets itself (per trial) or that make no sense per trial.
NOT_SWEPT = ("threads", "save", "resume", "plot", "json", "quiet")
# Options that take several values in `fastnn train` itself: all of them go to every trial.
EVERY_TRIAL = ("ignore",)
# Options naming files, made absolute: the trials may run in other working directories, and a
# sweep may be resumed from another.
PATH_OPTIONS = ("data_dir", "data", "test_data")
CLASSIFICATION, REGRESSION = "classification", "regression"
# The metrics of each task, named as `fastnn train --json` names them: a regression reports
# RMSE, MAE and R^2, never an accuracy.
COMMON_METRICS = ("val_loss", "test_loss", "train_loss", "train_seconds")
TASK_METRICS = {
    CLASSIFICATION: ("val_accuracy", "test_accuracy", "train_accuracy", *COMMON_METRICS),
    REGRESSION: ("test_rmse", "test_mae", "test_r2", *COMMON_METRICS),
}
METRICS = tuple(dict.fromkeys(m for metrics in TASK_METRICS.values() for m in metrics))
HIGHER_IS_BETTER = ("val_accuracy", "test_accuracy", "train_accuracy", "test_r2")
# The options that decide a table's task: trials alike in these have the same task.
TASK_OPTIONS = ("data", "target", "task", "missing", "ignore")
# The per-epoch lists of a trial's history that the table and the plot read.
CURVES = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


class DaskMissing(MissingExtra):
    """dask.distributed cannot be imported; the message says how to install it."""

    def __init__(self):
        super().__init__("--scheduler needs dask.distributed", "dask")


CONNECT_TIMEOUT = 20  # seconds to reach the Dask scheduler and hear it answer
SWEEP_FILE = "sweep.json"
TRIAL_FILE = "trial.json"
MODEL_FILE = "model.npz"


# -- the command line ---------------------------------------------------------------------------

def add_arguments(p):
    """The sweep's options: every `fastnn train` run option taking several values, then its own."""
    _add_grid_options(p, grouped=True)
    run = p.add_argument_group("running")
    run.add_argument("--jobs", type=positive_int, default=1, metavar="N",
                     help="run N trials at once in local worker processes, each with "
                          "cores // N threads")
    run.add_argument("--threads", action=_ThreadsAreSetPerTrial, nargs="?", help=argparse.SUPPRESS)
    run.add_argument("--scheduler", metavar="ADDRESS",
                     type=_non_empty("the Dask scheduler's address tcp://HOST:PORT"),
                     help="run the trials on the Dask cluster whose scheduler is at ADDRESS "
                          "(tcp://HOST:PORT; needs pip install \".[dask]\")")
    output = p.add_argument_group("output")
    output.add_argument("--sort-by", choices=METRICS,
                        help="order of the table (default: val_accuracy with --val-split, else "
                             "test_accuracy; for regressions val_loss, else test_rmse)")
    output.add_argument("--output", metavar="DIR", type=_non_empty("a directory"),
                        help="write each finished trial (result and history as JSON) to DIR")
    output.add_argument("--save-models", action="store_true",
                        help="with --output, also save each trial's model")
    output.add_argument("--resume", metavar="DIR", type=_non_empty("a sweep's directory"),
                        help="continue the sweep written to DIR: run its missing and failed "
                             "trials")
    output.add_argument("--plot", metavar="PATH", type=_non_empty("a file name"),
                        help="overlay the trials' validation (else training) accuracy curves "
                             "(loss curves for regressions) in one PNG (needs matplotlib)")
    add_output_flags(output, "the trials (a 'trials' list)")


def _non_empty(what):
    """An argparse type: the text itself, refused when empty (an empty path or address would
    otherwise read as the option not given)."""
    def text(value):
        if not value:
            raise argparse.ArgumentTypeError(f"expected {what}, got an empty value")
        return value
    return text


class _ThreadsAreSetPerTrial(argparse.Action):
    """`fastnn train --threads` has no sweep counterpart: say why instead of "unrecognized"."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error("--threads: fastnn sweep gives each trial cores // --jobs threads itself "
                     "(or its Dask worker's); set --jobs instead")


def _run_option_groups():
    """The argument groups of `fastnn train`'s run options (add_run_options), by title."""
    return add_run_options(argparse.ArgumentParser(add_help=False))


def swept_actions():
    """The train parser's actions the sweep takes, in the order of its option table."""
    return [a for g in _run_option_groups().values() for a in g._group_actions
            if a.dest not in NOT_SWEPT]


def _add_grid_options(p, grouped):
    for title, group in _run_option_groups().items():
        target = p.add_argument_group(f"{title} (several values: one trial each)") if grouped else p
        for action in group._group_actions:
            if action.dest not in NOT_SWEPT:
                _add_swept(target, action)


def _add_swept(group, action):
    """Add ``action`` of the train parser to the sweep: flags and EVERY_TRIAL options as they
    are, options with values as lists kept as text (each trial's values are checked when that
    trial is parsed)."""
    if action.nargs == 0:
        group.add_argument(*action.option_strings, dest=action.dest, action="store_true",
                           help=f"{action.help} (every trial)")
        return
    if action.dest in EVERY_TRIAL:
        group.add_argument(*action.option_strings, dest=action.dest, nargs=action.nargs,
                           metavar=action.metavar, help=f"{action.help} (every trial)")
        return
    metavar = action.metavar or action.dest.upper()
    help_text = action.help
    if action.choices:
        help_text += f" (one or more of: {', '.join(action.choices)})"
    if action.dest == "hidden":
        help_text = ("hidden layer widths: each value is one trial's single hidden layer "
                     "(--hidden 32 64 128 is three trials); give --hidden once per trial for "
                     "deeper networks (--hidden 64 --hidden 64 64), or join a network's widths "
                     "with commas (--hidden 256,128)")
    group.add_argument(*action.option_strings, dest=action.dest, action="append", nargs="+",
                       metavar=metavar, help=help_text)


def grid_parser():
    """A parser of the grid options alone (what sweep.json's "options" holds)."""
    p = RaisingParser(prog=f"{PROG} sweep")
    _add_grid_options(p, grouped=False)
    return p


def grid_options(args):
    """The grid part of the parsed sweep ``args`` as train-style options, e.g. ["--lr", "0.1",
    "0.01", "--nesterov"]: what sweep.json records and --resume reads back."""
    options = []
    for action in swept_actions():
        value = getattr(args, action.dest, None)
        if action.nargs == 0:
            options += [action.option_strings[0]] if value else []
        elif action.dest in EVERY_TRIAL:
            options += [action.option_strings[0], *value] if value else []
        elif value:
            for values in value:
                options += [action.option_strings[0], *values]
    return options


def _absolute_paths(args):
    """Make the values of PATH_OPTIONS in the parsed sweep ``args`` absolute (an empty one stays
    empty, for the trial to refuse)."""
    for dest in PATH_OPTIONS:
        groups = getattr(args, dest, None)
        if groups:
            setattr(args, dest, [[os.path.abspath(v) if v else v for v in group]
                                 for group in groups])


# -- the grid -----------------------------------------------------------------------------------

class Trial:
    """One combination: ``params`` (option dest -> value, for people and JSON) and ``options``
    (the `fastnn train` options that run it). ``id`` names it in DIR."""

    def __init__(self, index, texts, options):
        self.index, self.texts, self.options = index, texts, options
        self.params = {dest: _typed(text) for dest, text in texts.items()}
        digest = hashlib.sha256(json.dumps(options).encode()).hexdigest()[:10]
        self.id = f"{index:03d}-{digest}"

    def label(self, varied):
        """The values of the ``varied`` options as typed, e.g. "hidden=64 64 lr=0.1"."""
        return " ".join(f"{name}={_show(self.texts[name])}" for name in varied) or "(one trial)"


def build_grid(args):
    """(trials, names of the varied options) of the parsed sweep ``args``. UserError for values
    given twice (each value makes trials of its own: a duplicate would only repeat them)."""
    axes, varied = [], []
    for action in swept_actions():
        value = getattr(args, action.dest, None)
        flag = action.option_strings[0]
        if action.nargs == 0:
            if value:
                axes.append([(action.dest, True, [flag])])
            continue
        if not value:
            continue
        if action.dest in EVERY_TRIAL:
            axes.append([(action.dest, value, [flag, *value])])
            continue
        if action.dest == "hidden":
            choices = _hidden_choices(value)
            points = [(action.dest, widths, [flag, *widths]) for widths in choices]
            shown = [" ".join(widths) for widths in choices]
        else:
            texts = [text for values in value for text in values]
            points = [(action.dest, text, [flag, text]) for text in texts]
            shown = texts
        _refuse_duplicates(flag, [_normalised(action, text) for text in shown], shown)
        axes.append(points)
        if len(points) > 1:
            varied.append(action.dest)
    trials = []
    for index, combination in enumerate(itertools.product(*axes)):
        texts = {dest: value for dest, value, _ in combination}
        options = [text for _, _, fragment in combination for text in fragment]
        trials.append(Trial(index, texts, options))
    return trials, varied


def _hidden_choices(groups):
    """The architectures of --hidden: one per value when it is given once, else one per group;
    commas join the widths of one architecture."""
    if len(groups) == 1:
        return [_widths(text) for text in groups[0]]
    return [[w for text in group for w in _widths(text)] for group in groups]


def _widths(text):
    widths = [w.strip() for w in text.split(",")]
    if not all(widths):
        raise UserError(f"--hidden: expected widths joined by commas, got {text!r}")
    return widths


def _normalised(action, text):
    """The value ``text`` stands for (so that 0.1 and 0.10 are one value), or the text itself."""
    if action.dest == "hidden":
        try:
            return tuple(int(w) for w in text.split())
        except ValueError:
            return text
    try:
        return action.type(text) if action.type else text
    except (argparse.ArgumentTypeError, ValueError, TypeError):
        return text


def _refuse_duplicates(flag, values, shown):
    seen = {}
    for value, text in zip(values, shown):
        if value in seen:
            raise UserError(f"{flag}: {seen[value]!r} and {text!r} are the same value; give each "
                            "value once")
        seen[value] = text


def _typed(value):
    """A param as JSON shows it: numbers as numbers where the text is one."""
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, bool):
        return value
    for kind in (int, float):
        try:
            number = kind(value)
        except ValueError:
            continue
        return number if math.isfinite(number) else value
    return value


def _show(value):
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


# -- one trial (runs where the trial runs: this process, a loky worker, a Dask worker) ----------

def run_trial(trial_id, options, threads=None, save_model=False):
    """Run ``fastnn train OPTIONS`` quietly: a dict with "id", "status" ("ok" or "failed"),
    "warnings" (the messages of the warnings the trial raised, each once) and either the train
    JSON fields (plus "model", the saved file's bytes, with save_model) or "error": the message
    `fastnn train` would print, or "internal error: ..." for a bug, which fails this trial alone
    too."""
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        try:
            outcome = {"status": "ok", **_train_trial(options, threads, save_model, started)}
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - a trial's failure, whatever it is, is its own
            message = user_error_message(exc) or _internal(exc)
            outcome = {"status": "failed", "error": " ".join(message.split())}
    messages = dict.fromkeys(" ".join(str(w.message).split()) for w in caught)
    return {"id": trial_id, **outcome, "warnings": list(messages)}


def _train_trial(options, threads, save_model, started):
    args = parse_train_options([*options, "--quiet"])
    if threads is not None:
        args.threads = threads
    # The trials run in one process share the dataset.
    with loaded_data_kept(), tempfile.TemporaryDirectory(prefix="fastnn-trial-") as tmp:
        if save_model:
            args.save = os.path.join(tmp, MODEL_FILE)
        result, _ = train(args, started)
        if save_model:
            with open(args.save, "rb") as f:
                result["model"] = f.read()
    result["config"]["save"] = None  # the temporary path means nothing outside the trial
    return result


def _internal(exc):
    return f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}"


# -- where the trials run -----------------------------------------------------------------------

def _in_process(trials, save_model):
    # Loaded here, the default thread count warns (if it does) for the sweep, not for one trial.
    from . import _threads  # noqa: F401
    for trial in trials:
        yield run_trial(trial.id, trial.options, None, save_model)


def _with_loky(trials, jobs, save_model):
    """Run ``trials`` in ``jobs`` local worker processes (loky, as joblib does), ``jobs`` at a
    time. A worker process that dies (the out-of-memory killer, a crash) ends the pool and the
    trials it ran: they run again, each alone, so that a second death is that trial's own, and
    fails it."""
    from concurrent.futures import FIRST_COMPLETED, wait

    from joblib.externals.loky import get_reusable_executor
    from joblib.externals.loky.process_executor import BrokenProcessPool

    from ._cpulimits import available_cores
    jobs = min(jobs, len(trials))  # no idle workers holding cores
    threads = max(1, available_cores()[0] // jobs)
    # The workers' default thread count is then the one their trials use: no warning about a
    # setting of the user's that the sweep overrides.
    env = {"FASTNN_NUM_THREADS": str(threads)}
    waiting, lost, running, executor = list(trials), set(), {}, None
    try:
        while waiting or running:
            executor = get_reusable_executor(max_workers=jobs, env=env)  # a new one once broken
            while waiting and _may_start(waiting[0], running.values(), jobs, lost):
                trial = waiting.pop(0)
                future = executor.submit(run_trial, trial.id, trial.options, threads, save_model)
                running[future] = trial
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                done, _ = wait(running)  # the broken pool ends every trial it was running
            for future in done:
                trial = running.pop(future)
                if isinstance(future.exception(), BrokenProcessPool):
                    if trial.id in lost:
                        yield {"id": trial.id, "status": "failed",
                               "error": _worker_died(future.exception())}
                    else:
                        lost.add(trial.id)
                        waiting.insert(0, trial)
                    continue
                try:
                    result = future.result()
                except Exception as exc:  # noqa: BLE001 - e.g. a result that cannot be pickled
                    result = {"id": trial.id, "status": "failed", "error": _internal(exc)}
                yield result
    finally:
        if running:  # a sweep stopped early (refused, interrupted): its running trials stop
            for future in running:
                future.cancel()
            executor.shutdown(wait=True, kill_workers=True)


def _may_start(trial, running, jobs, lost):
    """Whether ``trial`` may start beside the ``running`` trials: a trial run again after its
    worker died runs alone."""
    running = list(running)
    return not running or (len(running) < jobs and trial.id not in lost
                           and not any(t.id in lost for t in running))


def _worker_died(exc):
    _, found, codes = str(exc).partition("The exit codes of the workers are ")
    detail = f"; exit codes {codes.strip()}" if found else ""
    return f"its worker process died twice (killed for lack of memory, or crashed{detail})"


def _with_dask(trials, address, save_model):
    distributed = _import_distributed()
    client = _dask_client(distributed, address)
    try:
        futures = {client.submit(run_trial, t.id, t.options, None, save_model, pure=False): t
                   for t in trials}
        for future in distributed.as_completed(futures):
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - e.g. a worker lost too often
                result = {"id": futures[future].id, "status": "failed", "error": _internal(exc)}
            yield result
    finally:
        client.close()


def _dask_client(distributed, address):
    """A Client of the scheduler at ``address``. The Client's own timeout covers reaching the
    address, not its handshake, which a server of another kind there (the dashboard's HTTP port)
    may never answer: a connection with its handshake is made first, within CONNECT_TIMEOUT."""
    import asyncio

    async def handshake():
        comm = await distributed.comm.connect(address, timeout=CONNECT_TIMEOUT)
        await comm.close()

    try:
        asyncio.run(asyncio.wait_for(handshake(), CONNECT_TIMEOUT))
    except asyncio.TimeoutError:
        reason = f"no answer within {CONNECT_TIMEOUT} s"
    except Exception as exc:  # noqa: BLE001 - whatever answered there is no Dask scheduler
        reason = str(exc) or type(exc).__name__
    else:
        try:
            return distributed.Client(address, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            reason = str(exc)
    raise UserError(f"--scheduler: cannot reach the Dask scheduler at {address} "
                    f"({' '.join(reason.split())})")


def _import_distributed():
    try:
        import distributed
    except ImportError as exc:
        raise DaskMissing() from exc
    return distributed


def _check_scheduler_address(address):
    """UserError unless ``address`` has the form of a Dask scheduler's TCP address (checked
    before any trial runs; whether the scheduler answers is known only when connecting)."""
    comm = _import_distributed().comm
    host, port = None, None
    if address.startswith("tcp://"):  # tls:// and others need settings the sweep has no option for
        try:
            host, port = comm.get_address_host_port(address)
        except ValueError:  # no port, ...
            pass
    if not host or not 0 < port < 65536:
        raise UserError(f"--scheduler: expected the Dask scheduler's address tcp://HOST:PORT, "
                        f"got {address!r}")


# -- the sweep directory ------------------------------------------------------------------------

def _prepare_output(args):
    """(directory or None, the sweep file's content with --resume, else None) for --output and
    --resume, checked; nothing is written yet (see _start_output)."""
    if args.resume:
        directory = args.resume
        path = os.path.join(directory, SWEEP_FILE)
        if not os.path.isfile(path):
            raise UserError(f"--resume: {directory} holds no sweep ({SWEEP_FILE} not found)")
        if args.output and os.path.abspath(args.output) != os.path.abspath(directory):
            raise UserError("--resume writes to the sweep's own directory; leave out --output")
        given = grid_options(args)
        if given:
            raise UserError(f"--resume: the grid comes from {path}; leave out {given[0]}")
        saved = _read_sweep_file(path)
        if args.save_models and not saved["save_models"]:
            raise UserError(f"--save-models: the sweep in {directory} was started without it; "
                            "its finished trials have no model")
        args.save_models = saved["save_models"]
        check_writable_location("--resume", path)
        return directory, saved
    if args.save_models and not args.output:
        raise UserError("--save-models needs --output DIR")
    if not args.output:
        return None, None
    directory = args.output
    if os.path.exists(os.path.join(directory, SWEEP_FILE)):
        raise UserError(f"--output: {directory} already holds a sweep; continue it with "
                        f"--resume {directory} or choose another directory")
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise UserError(f"--output: {directory} is not a directory")
    if os.path.isdir(directory) and os.listdir(directory):
        raise UserError(f"--output: {directory} holds other files and no sweep; give a new or "
                        "an empty directory")
    # The sweep file in it, or the directory itself in its parent when it is new.
    check_writable_location("--output", os.path.join(directory, SWEEP_FILE)
                            if os.path.isdir(directory) else os.path.normpath(directory))
    return directory, None


def _read_sweep_file(path):
    """The content of the sweep file ``path``, checked; UserError naming it when it is not one
    that fastnn sweep wrote."""
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except ValueError:
        saved = None
    saved = saved if isinstance(saved, dict) else {}
    version = saved.get("version")
    if saved.get("format") == FORMAT and isinstance(version, int) and version != VERSION:
        raise UserError(f"--resume: {path} was written by another version of fastnn sweep "
                        f"(format version {version}, this one reads {VERSION}); "
                        "run the sweep again")
    data = saved.get("data")
    if not (saved.get("format") == FORMAT and isinstance(saved.get("options"), list)
            and all(isinstance(o, str) for o in saved["options"])
            and isinstance(saved.get("save_models"), bool) and isinstance(data, dict)
            and all(_fingerprint_like(v) for v in data.values())):
        raise UserError(f"--resume: {path} is damaged, or not a sweep file written by fastnn sweep")
    return saved


def _saved_grid(path, saved):
    """build_grid of the sweep file's options; UserError naming the file when they are refused
    (the file was changed since fastnn sweep wrote it)."""
    try:
        return build_grid(grid_parser().parse_args(saved["options"]))
    except UserError as exc:
        raise UserError(f"--resume: {path} is damaged: {exc}") from None


def _data_fingerprints(trials):
    """{path: its size and SHA-256} of the files the trials read (each file of a directory
    given), so that --resume can tell that the data is still the same."""
    files = set()
    for trial in trials:
        for dest in PATH_OPTIONS:
            path = trial.texts.get(dest)
            if path and os.path.isdir(path):
                files.update(os.path.join(path, name) for name in os.listdir(path)
                             if os.path.isfile(os.path.join(path, name)))
            elif path and os.path.isfile(path):
                files.add(path)
    return {path: _fingerprint(path) for path in sorted(files)}


def _fingerprint(path):
    """{"size", "sha256"} of the file ``path``, or None when it cannot be read."""
    digest, size = hashlib.sha256(), 0
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
    except OSError:
        return None
    return {"size": size, "sha256": digest.hexdigest()}


def _fingerprint_like(value):
    return value is None or (isinstance(value, dict) and isinstance(value.get("size"), int)
                             and isinstance(value.get("sha256"), str))


def _check_data_unchanged(path, recorded):
    for name, fingerprint in recorded.items():
        if _fingerprint(name) != fingerprint:
            raise UserError(f"--resume: {name} is not the data the sweep started with (its size "
                            f"and SHA-256 differ from those in {path}); restore it, or start a "
                            "new sweep")


def _start_output(directory, options, save_models, trials):
    """Create --output DIR (unless it exists, empty) and its sweep file, after every refusal of
    the sweep's options; True when DIR was created here."""
    made = not os.path.isdir(directory)
    data = _data_fingerprints(trials)
    os.makedirs(directory, exist_ok=True)
    _write_json(os.path.join(directory, SWEEP_FILE),
                {"format": FORMAT, "version": VERSION, "options": options,
                 "save_models": bool(save_models), "data": data})
    return made


def _remove_output(directory, made):
    """Undo _start_output, for a sweep refused before it wrote any trial."""
    os.remove(os.path.join(directory, SWEEP_FILE))
    if made:
        os.rmdir(directory)


def _finished(directory, trials, save_models):
    """The finished trials in ``directory``, by id. A failed trial runs again, and so does one
    whose trial.json is damaged or whose model (with --save-models) is missing."""
    results = {}
    for trial in trials:
        try:
            with open(os.path.join(directory, trial.id, TRIAL_FILE), encoding="utf-8") as f:
                result = json.load(f)
        except (OSError, ValueError):
            continue
        if _intact(result, trial.id) and (
                not save_models or os.path.isfile(_model_path(directory, trial.id))):
            results[trial.id] = result
    return results


def _intact(result, trial_id):
    """Whether ``result``, read from a trial.json, is a finished trial that the table, the JSON
    and the plot can show."""
    history = result.get("history") if isinstance(result, dict) else None
    return (isinstance(history, dict) and result.get("id") == trial_id
            and result.get("status") == "ok" and isinstance(result.get("config"), dict)
            and all(isinstance(history.get(name), list)
                    and all(map(_number_or_none, history[name])) for name in CURVES)
            and _number_or_none(history.get("initial_epoch"))
            and all(map(_number_or_none, (result.get(name) for name in
                                          (*METRICS, "epochs", "best_epoch")))))


def _number_or_none(value):
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _model_path(directory, trial_id):
    return os.path.abspath(os.path.join(directory, trial_id, MODEL_FILE))


def _write_trial(directory, result):
    from ._atomic import atomic_write
    os.makedirs(os.path.join(directory, result["id"]), exist_ok=True)
    model = result.pop("model", None)
    if model is not None:
        with atomic_write(_model_path(directory, result["id"])) as f:
            f.write(model)
    _write_json(os.path.join(directory, result["id"], TRIAL_FILE), result)


def _write_json(path, value):
    from ._atomic import atomic_write
    with atomic_write(path, "w") as f:
        json.dump(finite_or_null(value), f, indent=1, allow_nan=False)


# -- the command ----------------------------------------------------------------------------------

def run(args, started):
    """``fastnn sweep``: returns the exit status (0; 1 when every trial failed; 130, or 143 for
    SIGTERM, when interrupted)."""
    if args.scheduler and args.jobs != 1:
        raise UserError("--jobs applies to local workers; with --scheduler the cluster decides")
    if args.scheduler:
        _check_scheduler_address(args.scheduler)
    if args.plot:
        from .plotting import require_matplotlib
        require_matplotlib()
    _absolute_paths(args)
    directory, saved = _prepare_output(args)
    if saved is not None:
        sweep_file = os.path.join(directory, SWEEP_FILE)
        trials, varied = _saved_grid(sweep_file, saved)
        _check_data_unchanged(sweep_file, saved["data"])
        options, finished = saved["options"], _finished(directory, trials, args.save_models)
    else:
        trials, varied = build_grid(args)
        options, finished = grid_options(args), {}
    if (args.sort_by or "").startswith("val_") and not any(
            float(t.params.get("val_split") or 0) > 0 for t in trials):
        raise UserError(f"--sort-by {args.sort_by} needs --val-split (no trial holds out "
                        "validation rows)")
    _check_sort_metric(args.sort_by, trials, finished)
    if args.plot:
        _check_plot_path(args.plot, directory, trials)
    made = _start_output(directory, options, args.save_models, trials) if (
        directory and saved is None) else None
    results = dict(finished)
    pending = [t for t in trials if t.id not in finished]
    human = human_stream(args)
    interrupted, runner, written = None, None, False
    try:
        if args.plot:  # its directory may be the --output directory just made
            check_writable_location("--plot", args.plot, _inputs(trials))
        _announce(args, trials, pending, directory, finished, human)
        runner = _runner(args, pending)
        for result in runner:
            for message in result.pop("warnings", ()):
                print_warning(f"trial {result['id']}: {message}")
            results[result["id"]] = result
            _check_sort_metric(args.sort_by, trials, results)  # before a refused sweep writes
            if directory:
                _write_trial(directory, result)
                written = True
            if human:
                print(f"  {_progress_line(result, trials, varied)}", file=human, flush=True)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (cli turns it into one)
        interrupted = 143 if isinstance(exc, Terminated) else getattr(exc, "status", 130)
    except UserError:
        if made is not None and not written:  # a refused sweep leaves nothing behind
            _remove_output(directory, made)
        raise
    finally:  # the trials still running stop (the sweep was interrupted or refused)
        if runner is not None:
            runner.close()
    return _finish(args, trials, varied, results, directory, interrupted, human)


def _announce(args, trials, pending, directory, finished, human):
    """The sweep's first line, and the warning for more local workers than cores."""
    if human:
        done = f", {len(trials) - len(pending)} already done in {directory}" if finished else ""
        where = (f"on {args.scheduler}" if args.scheduler else
                 f"{args.jobs} at a time" if args.jobs > 1 else "one at a time")
        print(f"sweep of {len(trials)} trials{done}: running {len(pending)}, {where}",
              file=human, flush=True)
    if min(args.jobs, len(pending)) > 1 and not args.scheduler:
        from ._cpulimits import available_cores
        cores, source = available_cores()
        if min(args.jobs, len(pending)) > cores:
            print_warning(f"--jobs {args.jobs}: more workers than the {cores} cores this "
                          f"process may use (limited by {source}); each runs one thread "
                          "and they share the cores")


def _inputs(trials):
    """The (what, path) pairs of the files the trials read, which --plot must not replace: the
    paths given, and the IDX files of a directory given."""
    given = sorted({(f"--{dest.replace('_', '-')}", t.texts[dest])
                    for t in trials for dest in PATH_OPTIONS if t.texts.get(dest)})
    return given + [pair for _, path in given for pair in idx_inputs(path)]


def _check_plot_path(path, directory, trials):
    """UserError unless --plot ``path`` names a PNG file that is none of the sweep's own files
    (its directory, sweep file and trial folders). Checked before the trials run; the rest,
    where it can be written, is check_writable_location's."""
    if directory:
        inside = os.path.relpath(os.path.realpath(path), os.path.realpath(directory))
        if inside in (os.curdir, SWEEP_FILE) or inside.split(os.sep)[0] in {t.id for t in trials}:
            raise UserError(f"--plot: {path} is one of the sweep's own files in {directory}; "
                            "give another path")
    if os.path.splitext(path)[1].lower() not in ("", ".png"):
        raise UserError(f"--plot: the plot is a PNG; expected a file name ending in .png, "
                        f"got {path!r}")


def _runner(args, pending):
    if args.scheduler:
        return _with_dask(pending, args.scheduler, args.save_models)
    if args.jobs > 1 and len(pending) > 1:
        return _with_loky(pending, args.jobs, args.save_models)
    return _in_process(pending, args.save_models)


def _task(result):
    """The task of a finished trial, as `fastnn train` reported it (RMSE only for a regression)."""
    return REGRESSION if "test_rmse" in result else CLASSIFICATION


def _task_key(trial):
    """Trials with the same key have the same task; None for MNIST and IDX digits."""
    if "data" not in trial.texts:
        return None
    return tuple(_show(trial.texts.get(name, "")) for name in TASK_OPTIONS)


def _known_tasks(trials, results):
    """{task key: task} of what is known: digits are classes, --task says it, and a finished
    trial tells the task of the trials of the same table and target."""
    tasks = {}
    for trial in trials:
        key = _task_key(trial)
        if key is None:
            tasks[key] = CLASSIFICATION
        elif trial.texts.get("task") in TASK_METRICS:
            tasks[key] = trial.texts["task"]
    by_id = {t.id: t for t in trials}
    for result in results.values():
        if result["status"] == "ok" and result["id"] in by_id:
            tasks.setdefault(_task_key(by_id[result["id"]]), _task(result))
    return tasks


def _check_sort_metric(metric, trials, results):
    """UserError for a --sort-by ``metric`` that no trial reports (an accuracy of regressions,
    an RMSE of classifications), as soon as every trial's task is known: before the trials run
    when their options tell it, else when the first of them finishes."""
    if metric is None:
        return
    tasks = _known_tasks(trials, results)
    if any(_task_key(t) not in tasks for t in trials):
        return
    present = sorted({tasks[_task_key(t)] for t in trials})
    if not any(metric in TASK_METRICS[task] for task in present):
        task = present[0]  # one task: the two together report every metric
        raise UserError(f"--sort-by {metric}: the trials are {task}s, which do not report it; "
                        f"choose one of {', '.join(TASK_METRICS[task])}")


def _progress_line(result, trials, varied):
    trial = next(t for t in trials if t.id == result["id"])
    label = trial.label(_table_columns(trials, varied))
    if result["status"] != "ok":
        return f"{label}: failed: {result['error']}"
    if _task(result) == REGRESSION:
        return f"{label}: test RMSE {result['test_rmse']:.4g}"
    return f"{label}: test accuracy {100 * result['test_accuracy']:.2f}%"


def _finish(args, trials, varied, results, directory, interrupted, human):
    by_id = {t.id: t for t in trials}
    rows = [_row(by_id[i], results[i]) for i in by_id if i in results]
    if args.save_models:
        for row in rows:
            if row["status"] == "ok":
                row["model"] = _model_path(directory, row["id"])
    sort_by = args.sort_by or _default_sort(rows)
    rows.sort(key=lambda r: _sort_key(r, sort_by))
    table = format_table(rows, _table_columns(trials, varied), sort_by,
                         {t.id: t.texts for t in trials})
    if args.json:
        if human:
            print(table, file=human, flush=True)
        print(json.dumps(finite_or_null(
            {"trials": rows, "varied": varied, "sort_by": sort_by, "output": directory,
             "complete": len(rows) == len(trials)}), allow_nan=False), flush=True)
    else:
        print(table, flush=True)
    plot_error = None
    if args.plot and any(r["status"] == "ok" for r in rows):
        try:
            _plot(rows, by_id, varied, args.plot)
        except (OSError, ValueError) as exc:  # after the table: the results are not lost
            plot_error = (f"--plot: {args.plot} not written: "
                          f"{user_error_message(exc) or ' '.join(str(exc).split())}")
    elif args.plot:
        print_warning(f"no trial finished; {args.plot} not written")
    if interrupted is not None:
        if plot_error:
            print_error(plot_error)
        what = "terminated" if interrupted == 143 else "interrupted"
        kept = (f"{len(rows)} of {len(trials)} trials finished and are in {directory}; continue "
                f"with: {PROG} sweep --resume {shlex.quote(directory)}" if directory else
                f"{len(rows)} of {len(trials)} trials finished (with --output DIR they are kept "
                "for --resume)")
        raise Interrupted(f"{what}; {kept}", interrupted)
    if plot_error:
        raise UserError(plot_error)
    if not any(r["status"] == "ok" for r in rows):
        print_error(f"every trial failed ({len(rows)} of {len(trials)})")
        return 1
    return 0


def _default_sort(rows):
    """Validation first when trials hold out rows: val_accuracy, else test_accuracy; for
    regressions val_loss, else test_rmse."""
    validation = any(r.get("val_loss") is not None for r in rows)
    if _finished_tasks(rows) == [REGRESSION]:
        return "val_loss" if validation else "test_rmse"
    return "val_accuracy" if validation else "test_accuracy"


def _finished_tasks(rows):
    return [task for task in TASK_METRICS
            if any(r["status"] == "ok" and _task(r) == task for r in rows)]


def _table_columns(trials, varied):
    """The options the table shows: those that vary, or the options given to a single trial (so
    that its row says what ran, failed or not)."""
    return varied or list(trials[0].texts)


def _row(trial, result):
    """The trial's JSON entry: its id, params, options, status, and the train fields."""
    row = {"id": trial.id, "params": trial.params, "options": trial.options, **result}
    row.setdefault("config", None)
    if row["status"] == "ok":
        row.update(_final_metrics(row["history"], row.get("best_epoch"),
                                  row["config"].get("early_stopping"), _task(row)))
    return row


def _final_metrics(history, best_epoch, early_stopping, task):
    """Training and validation loss (and accuracy, for a classification) of the kept weights:
    the best epoch's with early stopping, else the last epoch's."""
    epochs = len(history.get("train_loss", []))
    at = (best_epoch - history.get("initial_epoch", 0) - 1
          if early_stopping and best_epoch else epochs - 1)
    metrics = {}
    for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        if name in TASK_METRICS[task]:
            values = history.get(name) or []
            metrics[name] = values[at] if 0 <= at < len(values) else None
    return metrics


def _sort_key(row, metric):
    value = row.get(metric) if row["status"] == "ok" else None
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return (1, 0.0, row["id"])
    return (0, -value if metric in HIGHER_IS_BETTER else value, row["id"])


# The table's figures of each task, then of every trial: (header, metric, format).
TASK_FIGURES = {
    CLASSIFICATION: (("val acc", "val_accuracy", ".2%"), ("test acc", "test_accuracy", ".2%"),
                     ("test loss", "test_loss", ".4f")),
    REGRESSION: (("val loss", "val_loss", ".4f"), ("test RMSE", "test_rmse", ".4g"),
                 ("test MAE", "test_mae", ".4g"), ("test R^2", "test_r2", ".4f")),
}
RUN_FIGURES = (("epochs run", "epochs", "d"), ("seconds", "train_seconds", ".1f"))


def format_table(rows, columns, sort_by, texts):
    """The table of trials for people, in the order of ``rows`` (sorted by ``sort_by``): the
    options ``columns``, then the figures of the finished trials' tasks; a failed trial's error
    takes the place of its figures. ``texts``: id -> option -> value text."""
    figures = [f for task in _finished_tasks(rows) for f in TASK_FIGURES[task]]
    figures += RUN_FIGURES if figures else ()
    headers = ["#", *columns, *(header for header, _, _ in figures)]
    body = []
    for rank, row in enumerate(rows, 1):
        cells = [str(rank), *(_show(texts[row["id"]][name]) for name in columns)]
        if row["status"] == "ok":
            cells += [_figure(row.get(metric), spec) for _, metric, spec in figures]
        else:
            cells.append(f"failed: {row['error']}")
        body.append(cells)
    widths = [len(h) for h in headers]
    for row, cells in zip(rows, body):
        sized = cells if row["status"] == "ok" else cells[:-1]
        widths = [max(w, len(c)) for w, c in itertools.zip_longest(widths, sized, fillvalue="")]
    widths.append(0)  # a failed trial's error may run past the last column
    lines = [f"sorted by {sort_by}", headers] + body
    return "\n".join(line if isinstance(line, str) else
                     "  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip()
                     for line in lines)


def _figure(value, spec):
    return "-" if value is None else format(value, spec)


def _plot(rows, trials, varied, path):
    """Accuracy curves, or loss curves when some trials are regressions (which have no
    accuracy; they learn the standardised target, as `fastnn train --plot` says)."""
    from .plotting import save_sweep_curves
    ok = [r for r in rows if r["status"] == "ok"]
    tasks = _finished_tasks(ok)
    accuracy = tasks == [CLASSIFICATION]
    metric = "accuracy" if accuracy else "loss"
    validation = all(r["history"].get(f"val_{metric}") for r in ok)
    key = f"{'val' if validation else 'train'}_{metric}"
    scale = 100 if accuracy else 1
    curves = [(trials[r["id"]].label(varied),
               [scale * (v if v is not None else math.nan) for v in r["history"][key]])
              for r in ok]
    what = ("accuracy (%)" if accuracy else
            "loss (standardised target)" if tasks == [REGRESSION] else "loss")
    save_sweep_curves(curves, path, ylabel=f"{'validation' if validation else 'training'} {what}",
                      title=f"{len(ok)} trials" + (f": {', '.join(varied)}" if varied else ""))

