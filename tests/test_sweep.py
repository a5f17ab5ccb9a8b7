"""fastnn sweep: the grid, hostile values, failed trials, the JSON, the directory, resuming,
regressions, local worker processes and a real Dask cluster. Each run is tiny (300 MNIST rows
or a 200-row table, 1-2 epochs)."""
import csv
import json
import os
import signal
import socket
import sys
import threading

import pytest

from fastnn import cli, sweep
from fastnn.cli import data as cli_data

from dask_cluster import dask_scheduler  # noqa: F401 - a fixture
from synthetic import table

TINY = ["--limit", "300", "--epochs", "2"]


def _run(capsys, *argv):
    """(exit status, the JSON object of the last stdout line or None, stderr)."""
    status = cli.main(["sweep", *argv])
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    data = json.loads(lines[-1]) if "--json" in argv and status in (0, 1, 130) and lines else None
    return status, data, err


def _grid(*argv):
    args = cli.build_parser().parse_args(["sweep", *argv])
    return sweep.build_grid(args)


def _outcome(trial):
    """What must not depend on where a trial ran."""
    keys = ("status", "error", "test_accuracy", "test_loss", "epochs", "parameters")
    history = trial.get("history") or {}
    return ({k: trial.get(k) for k in keys},
            {k: history.get(k) for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy")})


# -- the grid -----------------------------------------------------------------------------------

def test_each_hidden_value_is_one_trial():
    trials, varied = _grid("--hidden", "32", "64", "128")
    assert [t.params["hidden"] for t in trials] == [[32], [64], [128]]
    assert varied == ["hidden"]


def test_hidden_groups_and_commas_give_depth():
    trials, _ = _grid("--hidden", "64", "--hidden", "64", "64")
    assert [t.params["hidden"] for t in trials] == [[64], [64, 64]]
    trials, varied = _grid("--hidden", "256,128")
    assert [t.options for t in trials] == [["--hidden", "256", "128"]] and varied == []


def test_the_grid_is_the_cartesian_product():
    trials, varied = _grid("--lr", "0.01", "0.1", "--momentum", "0", "0.9", "--nesterov",
                           "--epochs", "3")
    assert varied == ["lr", "momentum"]  # --epochs has one value
    assert [(t.params["lr"], t.params["momentum"]) for t in trials] == \
        [(0.01, 0), (0.01, 0.9), (0.1, 0), (0.1, 0.9)]
    assert all("--nesterov" in t.options and t.params["epochs"] == 3 for t in trials)
    assert len({t.id for t in trials}) == 4


@pytest.mark.parametrize("argv, message", [
    (["--lr", "0.1", "0.10"], "--lr: '0.1' and '0.10' are the same value"),
    (["--hidden", "64", "--hidden", "64"], "--hidden: '64' and '64' are the same value"),
    (["--activation", "relu", "tanh", "relu"], "--activation: 'relu' and 'relu'"),
    (["--hidden", "64,"], "--hidden: expected widths joined by commas, got '64,'"),
])
def test_duplicates_and_malformed_groups_are_refused(capsys, argv, message):
    status, _, err = _run(capsys, *argv)
    assert status == 2
    assert err.startswith(f"fastnn: error: {message}") and len(err.splitlines()) == 1


@pytest.mark.parametrize("argv", [["--lr"], ["--hidden"], ["--hidden", "8", "--lr"]])
def test_an_empty_list_is_refused(capsys, argv):
    status, _, err = _run(capsys, *argv)
    assert status == 2
    assert "expected at least one argument" in err and len(err.splitlines()) == 1


# -- failures are isolated ----------------------------------------------------------------------

def test_a_bad_value_or_a_diverged_trial_fails_alone(capsys):
    status, data, err = _run(capsys, *TINY, "--hidden", "8", "--lr", "0.1", "-0.5", "1e20",
                             "--activation", "relu", "swish", "--json", "--quiet")
    assert status == 0
    by_key = {(t["params"]["lr"], t["params"]["activation"]): t for t in data["trials"]}
    assert len(by_key) == 6
    ok = [t for t in data["trials"] if t["status"] == "ok"]
    assert [(t["params"]["lr"], t["params"]["activation"]) for t in ok] == [(0.1, "relu")]
    assert by_key[(-0.5, "relu")]["error"] == "argument --lr: expected a number > 0, got '-0.5'"
    assert "invalid choice: 'swish'" in by_key[(0.1, "swish")]["error"]
    assert by_key[(1e20, "relu")]["error"].startswith("training diverged")
    assert data["trials"][0]["status"] == "ok"  # the finished trial first, the failed after it
    assert all(t["status"] == "failed" and t["config"] is None for t in data["trials"][1:])


def test_the_table_names_the_failure(capsys):
    status = cli.main(["sweep", *TINY, "--hidden", "8", "--lr", "0.1", "-1", "--quiet"])
    out = capsys.readouterr().out
    assert status == 0
    lines = out.strip().splitlines()
    assert lines[0] == "sorted by test_accuracy"
    assert lines[1].split() == ["#", "lr", "val", "acc", "test", "acc", "test", "loss", "epochs",
                                "run", "seconds"]
    assert lines[2].split()[:2] == ["1", "0.1"]
    assert lines[3].split()[:3] == ["2", "-1", "failed:"]


def test_a_trial_out_of_memory_fails_alone(capsys, monkeypatch):
    import fastnn
    real = fastnn.Linear

    def linear(n_in, n_out, *args, **kwargs):  # as numpy does for a network too large
        if n_out == 12:
            raise MemoryError("Unable to allocate 584. GiB for an array with shape (784, 12)")
        return real(n_in, n_out, *args, **kwargs)

    monkeypatch.setattr(fastnn, "Linear", linear)
    status, data, _ = _run(capsys, *TINY, "--hidden", "12", "8", "--json", "--quiet")
    assert status == 0
    by_hidden = {t["params"]["hidden"][0]: t for t in data["trials"]}
    assert by_hidden[8]["status"] == "ok" and by_hidden[12]["status"] == "failed"
    assert "not enough memory" in by_hidden[12]["error"]


def test_a_single_failed_trial_shows_its_options_and_fails_the_sweep(capsys):
    status = cli.main(["sweep", "--limit", "300", "--epochs", "1", "--hidden", "8,x", "--quiet"])
    out, err = capsys.readouterr()
    assert status == 1
    assert err == "fastnn: error: every trial failed (1 of 1)\n"
    lines = out.strip().splitlines()
    assert lines[1].split() == ["#", "limit", "hidden", "epochs"]
    assert lines[2].split() == ["1", "300", "8", "x", "1", "failed:", "argument", "--hidden:",
                                "expected", "an", "integer,", "got", "'x'"]


def test_every_trial_failed_is_exit_status_1_with_the_json(capsys):
    status, data, err = _run(capsys, *TINY, "--lr", "-1", "-2", "--json", "--quiet")
    assert status == 1 and err == "fastnn: error: every trial failed (2 of 2)\n"
    assert [t["status"] for t in data["trials"]] == ["failed", "failed"] and data["complete"]


# -- a trial is `fastnn train` ------------------------------------------------------------------

def test_a_trial_equals_fastnn_train(capsys):
    options = [*TINY, "--hidden", "16", "--val-split", "0.2", "--lr", "0.07"]
    status, data, _ = _run(capsys, *options, "--json", "--quiet")
    assert status == 0 and data["sort_by"] == "val_accuracy"
    assert cli.main(["train", *options, "--json", "--quiet"]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert _outcome(data["trials"][0]) == _outcome({"status": "ok", **trained})
    assert data["trials"][0]["val_accuracy"] == trained["history"]["val_accuracy"][-1]


# -- regressions --------------------------------------------------------------------------------

@pytest.fixture
def spend_csv(tmp_path):
    """A 200-row table whose numeric target "spend" is a regression, "segment" a classification."""
    pytest.importorskip("pandas")
    columns = table(200)
    path = tmp_path / "spend.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(zip(*columns.values()))
    return str(path)


def _regression(path, *more):
    return ["--data", path, "--target", "spend", "--ignore", "segment", "--epochs", "1", *more]


def test_a_regression_sweep_reports_what_train_reports(capsys, spend_csv):
    options = _regression(spend_csv, "--hidden", "8")
    status, data, _ = _run(capsys, *options, "--lr", "0.01", "0.05", "--json", "--quiet")
    assert status == 0 and data["sort_by"] == "test_rmse"
    rmse = [t["test_rmse"] for t in data["trials"]]
    assert rmse == sorted(rmse) and len(rmse) == 2
    assert not [k for t in data["trials"] for k in t if k.endswith("accuracy")]
    assert cli.main(["train", *options, "--lr", "0.05", "--json", "--quiet"]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    swept = next(t for t in data["trials"] if t["params"]["lr"] == 0.05)
    for key in ("test_rmse", "test_mae", "test_r2", "test_loss", "task"):
        assert swept[key] == trained[key]


def test_a_regression_table_shows_rmse_mae_and_r2(capsys, spend_csv):
    status = cli.main(["sweep", *_regression(spend_csv, "--lr", "0.01", "0.05")])
    out = capsys.readouterr().out.strip().splitlines()
    assert status == 0
    assert out[1].startswith("  lr=0.01: test RMSE ")
    assert out[3] == "sorted by test_rmse"
    assert out[4].split() == ["#", "lr", "val", "loss", "test", "RMSE", "test", "MAE", "test",
                              "R^2", "epochs", "run", "seconds"]


def test_a_regression_plot_overlays_loss_curves(capsys, monkeypatch, spend_csv, tmp_path):
    pytest.importorskip("matplotlib")
    from fastnn import plotting
    drawn = {}
    monkeypatch.setattr(plotting, "save_sweep_curves", lambda curves, path, ylabel, title:
                        drawn.update(curves=curves, ylabel=ylabel))
    status, data, _ = _run(capsys, *_regression(spend_csv, "--lr", "0.01", "0.05", "--val-split",
                                                "0.2", "--plot", str(tmp_path / "c.png")),
                           "--json", "--quiet")
    assert status == 0 and drawn["ylabel"] == "validation loss (standardised target)"
    assert sorted(c[1] for c in drawn["curves"]) == sorted(t["history"]["val_loss"]
                                                           for t in data["trials"])


@pytest.mark.parametrize("more, sort_by, higher_first", [
    (["--val-split", "0.2"], "val_loss", False),  # the default with validation rows
    (["--sort-by", "test_loss"], "test_loss", False),
    (["--sort-by", "test_r2"], "test_r2", True),
])
def test_regression_sort_orders(capsys, spend_csv, more, sort_by, higher_first):
    status, data, _ = _run(capsys, *_regression(spend_csv, "--lr", "0.01", "0.05", "0.2"), *more,
                           "--json", "--quiet")
    assert status == 0 and data["sort_by"] == sort_by
    values = [t[sort_by] for t in data["trials"]]
    assert values == sorted(values, reverse=higher_first) and None not in values


@pytest.mark.parametrize("argv, task, trials_run", [
    (["--limit", "300", "--sort-by", "test_rmse"], "classifications", 0),  # digits: known at once
    (["--task", "regression", "--sort-by", "test_accuracy"], "regressions", 0),
    (["--sort-by", "train_accuracy"], "regressions", 1),  # known when the first trial finishes
    (["--sort-by", "train_accuracy", "--jobs", "2"], "regressions", 1),
])
def test_a_metric_the_task_does_not_report_is_refused(capsys, monkeypatch, spend_csv, argv, task,
                                                      trials_run):
    real, calls = sweep.run_trial, []
    monkeypatch.setattr(sweep, "run_trial", lambda *a, **k: calls.append(a) or real(*a, **k))
    data = _regression(spend_csv) if "--limit" not in argv else ["--epochs", "1"]
    status, _, err = _run(capsys, *data, "--lr", "0.01", "0.05", "0.1", *argv, "--quiet")
    assert status == 2
    metric = argv[argv.index("--sort-by") + 1]
    assert err.startswith(f"fastnn: error: --sort-by {metric}: the trials are {task}, which do "
                          "not report it; choose one of ") and len(err.splitlines()) == 1
    if "--jobs" not in argv:  # the workers' calls are not seen here
        assert len(calls) == trials_run


# -- the directory, resuming, interrupting --------------------------------------------------------

GRID = [*TINY, "--hidden", "8", "16", "--lr", "0.05", "0.1"]


def test_output_directory_and_models(capsys, tmp_path):
    out = tmp_path / "sweep"
    status, data, _ = _run(capsys, *GRID, "--output", str(out), "--save-models", "--json", "--quiet")
    assert status == 0 and len(data["trials"]) == 4
    import fastnn
    for trial in data["trials"]:
        saved = json.loads((out / trial["id"] / "trial.json").read_text())
        assert saved["history"] == trial["history"] and saved["status"] == "ok"
        network = fastnn.load(str(out / trial["id"] / "model.npz"))
        assert network.n_parameters() == trial["parameters"]
    assert not [p for p in out.rglob("*.tmp")]
    # The same directory twice is refused; resuming it is the way.
    status, _, err = _run(capsys, *GRID, "--output", str(out))
    assert status == 2 and f"--resume {out}" in err


def test_resume_runs_only_the_missing_trials(capsys, tmp_path):
    out = tmp_path / "sweep"
    status, first, _ = _run(capsys, *GRID, "--output", str(out), "--json", "--quiet")
    assert status == 0
    # As if interrupted: one trial missing; a kept one marked to show it is not run again.
    missing, kept = first["trials"][0]["id"], first["trials"][1]["id"]
    for f in (out / missing).iterdir():
        f.unlink()
    (out / missing).rmdir()
    marked = json.loads((out / kept / "trial.json").read_text())
    marked["test_accuracy"] = 0.123
    (out / kept / "trial.json").write_text(json.dumps(marked))
    status, resumed, err = _run(capsys, "--resume", str(out), "--json")
    assert status == 0 and "running 1, one at a time" in err and "3 already done" in err
    by_id = {t["id"]: t for t in resumed["trials"]}
    assert by_id[kept]["test_accuracy"] == 0.123
    assert _outcome(by_id[missing]) == _outcome(first["trials"][0])
    assert (out / missing / "trial.json").exists()
    status, _, err = _run(capsys, "--resume", str(out), "--lr", "1")
    assert status == 2 and "leave out --lr" in err


def test_interrupt_keeps_finished_trials(capsys, tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    real = sweep.run_trial
    calls = []

    def interrupted_second(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep, "run_trial", interrupted_second)
    status, data, err = _run(capsys, *GRID, "--output", str(out), "--json", "--quiet")
    assert status == 130
    assert f"1 of 4 trials finished and are in {out}; continue with: fastnn sweep --resume" in err
    assert len(data["trials"]) == 1 and data["complete"] is False
    monkeypatch.setattr(sweep, "run_trial", real)
    status, data, _ = _run(capsys, "--resume", str(out), "--json", "--quiet")
    assert status == 0 and data["complete"] and len(data["trials"]) == 4


@pytest.mark.parametrize("argv, message", [
    (["--save-models"], "--save-models needs --output DIR"),
    (["--resume", "nowhere"], "--resume: nowhere holds no sweep"),
    (["--jobs", "2", "--scheduler", "tcp://127.0.0.1:1"], "--jobs applies to local workers"),
    (["--sort-by", "val_accuracy", "--limit", "500", "--epochs", "1"],
     "--sort-by val_accuracy needs --val-split"),
    (["--threads", "1"], "--threads: fastnn sweep gives each trial cores // --jobs threads"),
])
def test_option_errors(capsys, argv, message):
    status, _, err = _run(capsys, *argv)
    assert status == 2 and message in err


@pytest.mark.parametrize("argv", [
    ["--sort-by", "val_accuracy", "--limit", "500", "--epochs", "1"],  # refused for the metric
    ["--lr", "0.1", "0.1"],                                            # refused for the grid
])
def test_a_refused_sweep_writes_nothing(capsys, tmp_path, argv):
    out = tmp_path / "sweep"
    status, _, err = _run(capsys, *argv, "--output", str(out))
    assert status == 2 and err.startswith("fastnn: error:")
    assert not out.exists()


def test_missing_dask_names_the_extra(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    status, _, err = _run(capsys, *TINY, "--scheduler", "tcp://127.0.0.1:1")
    assert status == 2
    assert err == ('fastnn: error: --scheduler needs dask.distributed (not installed): '
                   'run pip install ".[dask]" in the fastnn repository\n')


def test_plot_overlays_the_trials(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.png"
    status, _, _ = _run(capsys, *GRID[:-3], "--val-split", "0.2", "--plot", str(path), "--quiet")
    assert status == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- where the trials run -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_run():
    """The JSON of GRID run in this process."""
    import io
    from contextlib import redirect_stdout
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        assert cli.main(["sweep", *GRID, "--json", "--quiet"]) == 0
    return json.loads(buffer.getvalue().strip().splitlines()[-1])


def _outcomes(data):
    return {t["id"]: _outcome(t) for t in data["trials"]}


def test_two_local_workers_give_the_local_results(capsys, local_run):
    status, data, err = _run(capsys, *GRID, "--jobs", "2", "--json", "--quiet")
    assert status == 0 and "warning" not in err
    assert _outcomes(data) == _outcomes(local_run)
    # Each worker ran with cores // 2 threads.
    from fastnn._cpulimits import available_cores
    assert {t["config"]["threads"] for t in data["trials"]} == {max(1, available_cores()[0] // 2)}


def test_a_dask_cluster_gives_the_local_results(capsys, local_run, dask_scheduler):
    status, data, _ = _run(capsys, *GRID, "--scheduler", dask_scheduler, "--json", "--quiet")
    assert status == 0
    assert _outcomes(data) == _outcomes(local_run)
    # The workers' limits (the nanny sets OMP_NUM_THREADS=1) are honoured.
    assert {t["config"]["threads"] for t in data["trials"]} == {1}


def test_more_workers_than_cores_warns(capsys):
    from fastnn._cpulimits import available_cores
    cores, source = available_cores()
    jobs = cores + 1
    status, _, err = _run(capsys, "--limit", "100", "--epochs", "1", "--hidden",
                          *[str(4 + i) for i in range(jobs)], "--jobs", str(jobs), "--quiet")
    assert status == 0
    assert err == (f"fastnn: warning: --jobs {jobs}: more workers than the {cores} cores this "
                   f"process may use (limited by {source}); each runs one thread and they share "
                   "the cores\n")


@pytest.mark.parametrize("address", ["notaurl", "tcp://host", "http://host:8786",
                                     "tcp://host:99999", "tls://127.0.0.1:8786",
                                     "ws://127.0.0.1:8786"])
def test_a_malformed_scheduler_address_is_a_user_error(capsys, tmp_path, address):
    pytest.importorskip("distributed")
    status, _, err = _run(capsys, *TINY, "--scheduler", address, "--output", str(tmp_path / "o"))
    assert status == 2
    assert err == ("fastnn: error: --scheduler: expected the Dask scheduler's address "
                   f"tcp://HOST:PORT, got {address!r}\n")
    assert not (tmp_path / "o").exists()  # refused before anything is written


def test_an_unreachable_scheduler_is_a_user_error(capsys, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(sweep, "CONNECT_TIMEOUT", 1)
    status, _, err = _run(capsys, *TINY, "--scheduler", "tcp://127.0.0.1:9")
    assert status == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err


def test_trials_in_one_process_load_the_dataset_once(capsys, monkeypatch):
    from fastnn import datasets
    real, calls = datasets.load_mnist, []

    def counting(*args, **kwargs):
        calls.append(kwargs.get("subset", "all"))
        return real(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_mnist", counting)
    monkeypatch.setitem(cli_data._data_cache, "key", None)
    status, data, _ = _run(capsys, *TINY, "--hidden", "8", "--lr", "0.05", "0.1", "--json",
                           "--quiet")
    assert status == 0 and len(data["trials"]) == 2 and calls == ["all"]
    assert cli_data._data_cache["active"] == 0  # `fastnn train` runs after it load their own
    assert cli.main(["train", *TINY, "--hidden", "8", "--quiet"]) == 0 and calls == ["all"] * 2


@pytest.mark.parametrize("answer", [None, b"HTTP/1.1 400 Bad Request\r\n\r\n"])
def test_a_server_that_is_no_scheduler_is_a_user_error(capsys, monkeypatch, answer):
    """A port where something else listens (silent, or the dashboard's HTTP) never answers the
    handshake: the timeout covers it."""
    pytest.importorskip("distributed")
    server = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def serve():
        connection, _ = server.accept()
        accepted.append(connection)  # kept open: no answer, or the HTTP one
        if answer:
            connection.recv(4096)
            connection.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setattr(sweep, "CONNECT_TIMEOUT", 1)
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    outcome = []
    sweeping = threading.Thread(target=lambda: outcome.append(_run(capsys, *TINY, "--scheduler",
                                                                    address, "--quiet")),
                                daemon=True)
    sweeping.start()
    sweeping.join(30)
    for connection in [*accepted, server]:
        connection.close()
    assert outcome, "the sweep did not give up"
    status, _, err = outcome[0]
    assert status == 2 and len(err.splitlines()) == 1
    assert err.startswith("fastnn: error: --scheduler: cannot reach the Dask scheduler at "
                          f"{address} (")


def test_a_dask_cluster_reads_the_paths_of_this_directory(capsys, monkeypatch, spend_csv,
                                                           dask_scheduler):
    monkeypatch.chdir(os.path.dirname(spend_csv))  # the workers run in another directory
    status, data, _ = _run(capsys, *_regression("spend.csv", "--lr", "0.01"), "--scheduler",
                           dask_scheduler, "--json", "--quiet")
    assert status == 0 and data["trials"][0]["status"] == "ok"


# -- the sweep keeps going ----------------------------------------------------------------------

def _patched_where_it_runs(monkeypatch, patch):
    """Make every trial call ``patch(options)`` first, in this process or in a worker; what it
    returns, if not None, is called when the trial ends (to undo the patch)."""
    real = sweep.run_trial

    def run_trial(trial_id, options, *rest):
        undo = patch(options)
        try:
            return real(trial_id, options, *rest)
        finally:
            if undo is not None:
                undo()

    monkeypatch.setattr(sweep, "run_trial", run_trial)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_bug_met_by_one_trial_fails_that_trial_alone(capsys, monkeypatch, jobs):
    def bug(args, started):
        raise ValueError("a bug")

    def bug_at_lr_02(options):
        module = sys.modules["fastnn.sweep"]  # in a worker, its own
        if "0.2" in options:
            real, module.train = module.train, bug
            return lambda: setattr(module, "train", real)
        return None

    _patched_where_it_runs(monkeypatch, bug_at_lr_02)
    status, data, _ = _run(capsys, *TINY, "--hidden", "8", "--lr", "0.05", "0.2", "0.1", "--jobs",
                           jobs, "--json", "--quiet")
    assert status == 0
    by_lr = {t["params"]["lr"]: t for t in data["trials"]}
    assert by_lr[0.2]["status"] == "failed"
    assert by_lr[0.2]["error"] == "internal error: ValueError: a bug"
    assert by_lr[0.05]["status"] == by_lr[0.1]["status"] == "ok"


def test_a_killed_worker_process_fails_its_trial_alone(capsys, monkeypatch):
    def killed_at_lr_02(options):
        if "0.2" in options:  # as the out-of-memory killer does
            os.kill(os.getpid(), signal.SIGKILL)

    _patched_where_it_runs(monkeypatch, killed_at_lr_02)
    status, data, _ = _run(capsys, *TINY, "--hidden", "8", "--lr", "0.05", "0.2", "0.1", "--jobs",
                           "2", "--json", "--quiet")
    assert status == 0 and data["complete"]
    by_lr = {t["params"]["lr"]: t for t in data["trials"]}
    assert by_lr[0.2]["status"] == "failed"
    assert by_lr[0.2]["error"].startswith("its worker process died twice (killed for lack of "
                                          "memory, or crashed")
    assert by_lr[0.05]["status"] == by_lr[0.1]["status"] == "ok"


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_trials_warnings_are_lines_naming_it(capfd, monkeypatch, jobs):
    if jobs != "1":
        from joblib.externals.loky import get_reusable_executor
        get_reusable_executor().shutdown(kill_workers=True)  # workers start with this environment
    monkeypatch.setenv("FASTNN_NUM_THREADS", "999")  # the sweep sets the workers' own
    status = cli.main(["sweep", *TINY, "--hidden", "8", "--lr", "0.1", "30", "--jobs", jobs,
                       "--json", "--quiet"])
    out, err = capfd.readouterr()
    assert status == 0
    unstable = json.loads(out.strip().splitlines()[-1])["trials"][1]
    assert unstable["params"]["lr"] == 30
    lines = err.splitlines()  # no Python warning, none about the threads
    assert len(lines) == 1
    assert lines[0].startswith(f"fastnn: warning: trial {unstable['id']}: the training loss grew "
                               "from ")


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_trials_range_warning_is_a_line_naming_it(capfd, tmp_path, jobs):
    import numpy as np
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 3))
    # A regression: its test is scored by predict, which warns (a classifier's evaluate does not).
    np.savez(tmp_path / "train.npz", X=x, y=x @ [1.0, -2.0, 0.5])
    np.savez(tmp_path / "far.npz", X=x[:20] * 100, y=x[:20] @ [1.0, -2.0, 0.5])
    status = cli.main(["sweep", "--data", str(tmp_path / "train.npz"), "--test-data",
                       str(tmp_path / "far.npz"), "--epochs", "1", "--hidden", "8", "--lr", "0.01",
                       "0.02", "--jobs", jobs, "--json", "--quiet"])
    out, err = capfd.readouterr()
    assert status == 0
    ids = [t["id"] for t in json.loads(out.strip().splitlines()[-1])["trials"]]
    lines = err.splitlines()
    assert len(lines) == 2, err  # one per trial, each printed by the sweep
    assert sorted(line.split(": ")[2] for line in lines) == sorted(f"trial {i}" for i in ids)
    assert all(line.startswith("fastnn: warning: trial ") and "lie far outside the range seen "
               "in training" in line for line in lines)


# -- resuming -----------------------------------------------------------------------------------

def test_resume_from_another_directory_reads_the_same_files(capsys, monkeypatch, spend_csv,
                                                            tmp_path):
    monkeypatch.chdir(tmp_path)
    name = os.path.basename(spend_csv)
    status, first, _ = _run(capsys, *_regression(name, "--lr", "0.01", "0.05"), "--output",
                            "sweep", "--json", "--quiet")
    assert status == 0
    saved = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert spend_csv in saved["options"] and name not in saved["options"]
    assert saved["data"][spend_csv]["size"] == os.path.getsize(spend_csv)
    missing = first["trials"][0]["id"]
    for f in (tmp_path / "sweep" / missing).iterdir():
        f.unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / name).write_text("x,spend\n1,2\n")  # the same name here is another table
    monkeypatch.chdir(elsewhere)
    status, resumed, err = _run(capsys, "--resume", str(tmp_path / "sweep"), "--json")
    assert status == 0 and "1 already done" in err and "running 1" in err
    assert _outcomes(resumed) == _outcomes(first)


def test_resume_refuses_data_changed_since_the_sweep_started(capsys, spend_csv, tmp_path):
    out = tmp_path / "sweep"
    assert _run(capsys, *_regression(spend_csv), "--output", str(out), "--quiet")[0] == 0
    with open(spend_csv, "a") as f:
        f.write("30.0,1,Lyon,basic,silver,50.0\n")
    status, _, err = _run(capsys, "--resume", str(out), "--quiet")
    assert status == 2
    assert err == (f"fastnn: error: --resume: {spend_csv} is not the data the sweep started "
                   f"with (its size and SHA-256 differ from those in {out / 'sweep.json'}); "
                   "restore it, or start a new sweep\n")


def test_resume_runs_the_failed_trials_again(capsys, tmp_path):
    out = tmp_path / "sweep"
    status, _, _ = _run(capsys, *TINY, "--hidden", "8", "--lr", "0.1", "-1", "--output", str(out),
                        "--quiet")
    assert status == 0
    status, data, err = _run(capsys, "--resume", str(out), "--json")
    assert status == 0 and "1 already done" in err and "running 1" in err
    assert [t["status"] for t in data["trials"]] == ["ok", "failed"]


def test_every_saved_model_is_named_by_its_absolute_path(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    status, first, _ = _run(capsys, *TINY, "--hidden", "8", "16", "--output", "sm",
                            "--save-models", "--json", "--quiet")
    assert status == 0
    expected = {t["id"]: str(tmp_path / "sm" / t["id"] / "model.npz") for t in first["trials"]}
    assert {t["id"]: t["model"] for t in first["trials"]} == expected
    missing = first["trials"][0]["id"]
    for f in (tmp_path / "sm" / missing).iterdir():
        f.unlink()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    status, resumed, _ = _run(capsys, "--resume", "../sm", "--json", "--quiet")
    assert status == 0 and {t["id"]: t["model"] for t in resumed["trials"]} == expected
    assert all(os.path.isfile(path) for path in expected.values())


SWEEP_FILE = {"format": "fastnn-sweep", "version": 2, "options": ["--hidden", "8"],
              "save_models": False, "data": {}}


@pytest.mark.parametrize("content", [
    "[1]", "{", json.dumps({"format": "fastnn-sweep", "options": [1, 2]}),
    json.dumps({**SWEEP_FILE, "options": ["--hidden"]}),
    json.dumps({**SWEEP_FILE, "options": ["--output", "x"]}),
    json.dumps({**SWEEP_FILE, "data": [1]}),
])
def test_a_damaged_sweep_file_is_named(capsys, tmp_path, content):
    (tmp_path / "sweep.json").write_text(content)
    status, _, err = _run(capsys, "--resume", str(tmp_path))
    assert status == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"fastnn: error: --resume: {tmp_path / 'sweep.json'} is damaged")


def test_a_sweep_file_of_another_version_is_refused(capsys, tmp_path):
    (tmp_path / "sweep.json").write_text(json.dumps({**SWEEP_FILE, "version": 1}))
    status, _, err = _run(capsys, "--resume", str(tmp_path))
    assert status == 2 and "was written by another version of fastnn sweep" in err


@pytest.mark.parametrize("damage", [
    lambda t: {"id": t["id"]},
    lambda t: {k: v for k, v in t.items() if k != "history"},
    lambda t: {**t, "history": None},
    lambda t: {**t, "history": {**t["history"], "train_loss": ["x"]}},
    lambda t: {**t, "test_accuracy": "high"},
    lambda t: {**t, "config": None},
])
def test_a_damaged_trial_file_runs_that_trial_again(capsys, tmp_path, damage):
    out = tmp_path / "sweep"
    status, first, _ = _run(capsys, *TINY, "--hidden", "8", "16", "--output", str(out), "--json",
                            "--quiet")
    assert status == 0
    path = out / first["trials"][0]["id"] / "trial.json"
    path.write_text(json.dumps(damage(json.loads(path.read_text()))))
    status, resumed, err = _run(capsys, "--resume", str(out), "--json")
    assert status == 0 and "1 already done" in err and "running 1" in err
    assert _outcomes(resumed) == _outcomes(first)


# -- what the sweep writes ----------------------------------------------------------------------

@pytest.mark.parametrize("option", ["--output", "--resume", "--scheduler", "--plot"])
def test_an_empty_value_is_refused(capsys, option):
    status, _, err = _run(capsys, *TINY, option, "")
    assert status == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"fastnn: error: argument {option}: expected ")
    assert "got an empty value" in err


@pytest.mark.parametrize("plot, message", [
    ("newdir/", "--plot: expected a file name, got 'newdir/'"),
    ("curves.pdf", "--plot: the plot is a PNG; expected a file name ending in .png"),
    ("out", "--plot: out is one of the sweep's own files in out"),
    ("out/sweep.json", "--plot: out/sweep.json is one of the sweep's own files in out"),
    (".", "--plot: "),  # a directory; refused after --output made "out", which goes again
    ("/proc/curves.png", "--plot: "),  # no file can be made there
])
def test_a_plot_path_that_cannot_be_written_is_refused_first(capsys, monkeypatch, tmp_path, plot,
                                                            message):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    calls = []
    _patched_where_it_runs(monkeypatch, calls.append)
    status, _, err = _run(capsys, *TINY, "--output", "out", "--plot", plot)
    assert status == 2 and err.startswith(f"fastnn: error: {message}")
    assert calls == [] and os.listdir(tmp_path) == []


def test_a_resumed_sweep_refuses_a_plot_over_its_own_files(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "sweep"
    status, first, _ = _run(capsys, *TINY, "--hidden", "8", "--output", str(out), "--json",
                            "--quiet")
    for plot in (out / "sweep.json", out / first["trials"][0]["id"] / "curves.png"):
        status, _, err = _run(capsys, "--resume", str(out), "--plot", str(plot))
        assert status == 2 and "is one of the sweep's own files" in err
    assert json.loads((out / "sweep.json").read_text())["format"] == "fastnn-sweep"


def test_the_plot_may_go_in_the_new_output_directory(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "runs"
    status, _, _ = _run(capsys, *TINY, "--hidden", "8", "--output", str(out), "--plot",
                        str(out / "curves.png"), "--quiet")
    assert status == 0 and (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_a_plot_that_fails_after_the_trials_keeps_the_results(capsys, monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    from fastnn import plotting

    def disk_full(curves, path, ylabel, title):
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(plotting, "save_sweep_curves", disk_full)
    plot = str(tmp_path / "c.png")
    status = cli.main(["sweep", *TINY, "--hidden", "8", "--plot", plot, "--json", "--quiet"])
    out, err = capsys.readouterr()
    assert status == 2
    assert json.loads(out.strip().splitlines()[-1])["trials"][0]["status"] == "ok"
    assert err == (f"fastnn: error: --plot: {plot} not written: No space left on device: "
                   f"{plot}\n")


@pytest.mark.parametrize("existing", [False, True])
def test_a_sweep_refused_at_its_first_result_leaves_nothing(capsys, spend_csv, tmp_path,
                                                           existing):
    out = tmp_path / "sweep"
    if existing:
        out.mkdir()
    status, _, err = _run(capsys, *_regression(spend_csv, "--lr", "0.01", "0.05"), "--sort-by",
                          "train_accuracy", "--output", str(out), "--quiet")
    assert status == 2 and "--sort-by train_accuracy" in err
    assert (list(out.iterdir()) == []) if existing else not out.exists()


def test_output_into_a_directory_of_other_files_is_refused(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    status, _, err = _run(capsys, *TINY, "--output", str(tmp_path))
    assert status == 2
    assert err == (f"fastnn: error: --output: {tmp_path} holds other files and no sweep; give a "
                   "new or an empty directory\n")
    assert os.listdir(tmp_path) == ["notes.txt"]


# -- options that every trial takes -------------------------------------------------------------

def test_ignore_takes_several_columns_for_every_trial(capsys, spend_csv):
    trials, varied = _grid("--data", "t.csv", "--ignore", "city", "plan", "--lr", "0.1", "0.2")
    assert varied == ["lr"]
    assert all(t.options[t.options.index("--ignore"):][:3] == ["--ignore", "city", "plan"]
               for t in trials)
    status, data, _ = _run(capsys, "--data", spend_csv, "--target", "spend", "--ignore",
                           "segment", "city", "--epochs", "1", "--json", "--quiet")
    assert status == 0 and len(data["trials"]) == 1
    assert data["trials"][0]["inputs"] == 4  # age, visits and plan's two categories
