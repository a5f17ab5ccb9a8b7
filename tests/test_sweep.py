"""fastnn sweep: the grid, hostile values, failed trials, the JSON, the directory, resuming,
regressions, local worker processes and a real Dask cluster. Each run is tiny (300 MNIST rows
or a 200-row table, 1-2 epochs)."""
import csv
import json
import sys

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
                                     "tcp://host:99999"])
def test_a_malformed_scheduler_address_is_a_user_error(capsys, tmp_path, address):
    pytest.importorskip("distributed")
    status, _, err = _run(capsys, *TINY, "--scheduler", address, "--output", str(tmp_path / "o"))
    assert status == 2
    assert err == ("fastnn: error: --scheduler: expected the Dask scheduler's address "
                   f"tcp://HOST:PORT, got {address!r}\n")
    assert not (tmp_path / "o").exists()  # refused before anything is written


def test_an_unreachable_scheduler_is_a_user_error(capsys, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(sweep, "CONNECT_TIMEOUT", "1s")
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
