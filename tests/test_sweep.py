"""fastnn sweep: the grid, hostile values, failed trials, the JSON, the directory, resuming,
local worker processes and a real Dask cluster. Each run is tiny (300 MNIST rows, 1-2 epochs)."""
import json
import sys

import pytest

from fastnn import cli, sweep
from fastnn.cli import data as cli_data

from dask_cluster import dask_scheduler  # noqa: F401 - a fixture

TINY = ["--limit", "300", "--epochs", "2"]


def _run(capsys, *argv):
    """(exit status, the JSON object of the last stdout line or None, stderr)."""
    status = cli.main(["sweep", *argv])
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    data = json.loads(lines[-1]) if "--json" in argv and status in (0, 130) and lines else None
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
                                "seconds"]
    assert lines[2].split()[:2] == ["1", "0.1"]
    assert lines[3].split()[:3] == ["2", "-1", "failed:"]


# -- a trial is `fastnn train` ------------------------------------------------------------------

def test_a_trial_equals_fastnn_train(capsys):
    options = [*TINY, "--hidden", "16", "--val-split", "0.2", "--lr", "0.07"]
    status, data, _ = _run(capsys, *options, "--json", "--quiet")
    assert status == 0 and data["sort_by"] == "val_accuracy"
    assert cli.main(["train", *options, "--json", "--quiet"]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert _outcome(data["trials"][0]) == _outcome({"status": "ok", **trained})
    assert data["trials"][0]["val_accuracy"] == trained["history"]["val_accuracy"][-1]


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
