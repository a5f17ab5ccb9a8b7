"""The files the command line writes (``--save``, ``--plot``, ``--output``): checked before any
work (never an input, an empty path, a FIFO or a directory that cannot take a file), written
through symlinks with their permission bits kept; and the commands that refuse the checkpoint
of an interrupted regression."""
import os
import stat

import pytest

import fastnn
from synthetic import table
from test_cli import assert_user_error, make_dataset

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

FAST = ["--epochs", "2", "--hidden", "8", "--seed", "0"]


def train(data):
    return ["train", "--data", data, "--target", "segment", *FAST]


def write_csv(path, n=120, seed=0):
    pd.DataFrame(table(n, seed=seed)).to_csv(path, index=False)
    return path


@pytest.fixture
def files(tmp_path, cli):
    """A training table, a table to predict and a model trained on the first."""
    data, new, model = tmp_path / "data.csv", tmp_path / "new.csv", tmp_path / "m.npz"
    write_csv(data)
    write_csv(new, n=20, seed=1)
    assert cli(*train(data), "--save", model).returncode == 0
    return data, new, model


def refused_before_any_work(result, *fragments):
    assert_user_error(result, *fragments)
    assert result.stdout == ""  # nothing read, trained or written


# -- an output that is an input ----------------------------------------------------------------

SAME_FILE = {
    "train --save DATA": (["train", "--data", "{data}", "--target", "segment", *FAST,
                           "--save", "{data}"], "--save", "--data"),
    "train --save TEST-DATA": (["train", "--data", "{data}", "--test-data", "{new}", "--target",
                                "segment", *FAST, "--save", "{new}"], "--save", "--test-data"),
    "train --plot MODEL": (["train", "--data", "{data}", "--target", "segment", *FAST, "--save",
                            "{model}", "--plot", "{model}"], "--plot", "--save"),
    "train --save LINK-TO-DATA": (["train", "--data", "{data}", "--target", "segment", *FAST,
                                   "--save", "{link}"], "--save", "--data"),
    "predict --output MODEL": (["predict", "{model}", "--data", "{new}", "--output", "{model}"],
                               "--output", "the model"),
    "predict --output DATA": (["predict", "{model}", "--data", "{new}", "--output", "{new}"],
                              "--output", "--data"),
    "export --output MODEL": (["export", "{model}", "--output", "{model}"], "--output",
                              "the model"),
}


@pytest.mark.parametrize("case", SAME_FILE)
def test_an_output_that_is_an_input_is_refused(tmp_path, cli, files, case):
    data, new, model = files
    os.symlink(data, tmp_path / "link.csv")
    argv, option, what = SAME_FILE[case]
    paths = {"data": data, "new": new, "model": model, "link": tmp_path / "link.csv"}
    before = {p: p.read_bytes() for p in (data, new, model)}
    refused_before_any_work(cli(*[a.format(**paths) for a in argv]), option,
                            f"is the same file as {what}")
    assert {p: p.read_bytes() for p in before} == before


# -- an output that is a file of an IDX directory read ------------------------------------------

IDX_FILE = {  # argv, the file of the dataset named, the dataset gzipped
    "train --data-dir DIR --save": (["train", "--data-dir", "{dir}", *FAST, "--save", "{file}"],
                                    "train-images-idx3-ubyte.gz", True),
    "train --data DIR --plot": (["train", "--data", "{dir}", *FAST, "--plot", "{file}"],
                                "t10k-labels-idx1-ubyte", False),
    "sweep --data-dir DIR --plot": (["sweep", "--data-dir", "{dir}", *FAST, "--lr", "0.1", "0.2",
                                     "--plot", "{file}"], "t10k-images-idx3-ubyte", False),
    "predict --data DIR --output": (["predict", "{model}", "--data", "{dir}", "--output",
                                     "{file}"], "t10k-images-idx3-ubyte.gz", True),
}


@pytest.mark.parametrize("case", IDX_FILE)
def test_an_output_that_is_a_file_of_the_idx_directory_read_is_refused(tmp_path, cli, case):
    argv, name, compress = IDX_FILE[case]
    directory = make_dataset(str(tmp_path), compress, n_train=50, n_test=20)
    model = tmp_path / "m.npz"
    model.write_bytes(b"a model")  # refused before it is read
    path = tmp_path / name
    before = path.read_bytes()
    option = argv[-2]
    refused_before_any_work(cli(*[a.format(dir=directory, file=path, model=model) for a in argv]),
                            f"{option}: {path} is the same file as the IDX file {path}")
    assert path.read_bytes() == before


# -- paths that cannot be written ----------------------------------------------------------------

def commands(files, path):
    data, new, model = files
    return {"train --save": ([*train(data), "--save", path], "--save"),
            "train --plot": ([*train(data), "--plot", path], "--plot"),
            "predict --output": (["predict", model, "--data", new, "--output", path], "--output"),
            "export --output": (["export", model, "--output", path], "--output")}


@pytest.mark.parametrize("command", ["train --save", "train --plot", "predict --output",
                                     "export --output"])
def test_an_empty_path_is_refused(cli, files, command):
    argv, option = commands(files, "")[command]
    refused_before_any_work(cli(*argv), f"{option}: expected a file name, got an empty path")


@pytest.mark.parametrize("command", ["train --save", "train --plot", "predict --output",
                                     "export --output"])
def test_a_path_ending_in_a_separator_is_refused(tmp_path, cli, files, command):
    path = f"{tmp_path / 'new'}{os.sep}"
    argv, option = commands(files, path)[command]
    refused_before_any_work(cli(*argv), f"{option}: expected a file name, got {path!r} (a directory's)")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("command", ["train --save", "predict --output", "export --output"])
def test_a_fifo_is_refused_and_kept(tmp_path, cli, files, command):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    argv, option = commands(files, fifo)[command]
    refused_before_any_work(cli(*argv), f"{option}: {fifo} is a FIFO")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
@pytest.mark.parametrize("command", ["train --save", "predict --output", "export --output"])
def test_a_directory_that_takes_no_file_names_the_option_and_the_cause(cli, files, command):
    argv, option = commands(files, "/proc/x.csv")[command]
    result = cli(*argv)
    refused_before_any_work(result, f"{option}: cannot write to the directory /proc (")
    assert ".tmp" not in result.stderr


# -- how outputs are written -------------------------------------------------------------------

def test_output_through_a_symlink_writes_its_target(tmp_path, cli, files):
    _, new, model = files
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "t.csv"
    target.write_text("old\n")
    link = tmp_path / "link.csv"
    os.symlink(target, link)
    assert cli("predict", model, "--data", new, "--output", link).returncode == 0
    assert os.path.islink(link) and os.readlink(link) == str(target)
    lines = target.read_text().splitlines()
    assert lines[0] == "prediction" and len(lines) == 21


def test_output_keeps_its_permission_bits(tmp_path, cli, files):
    data, new, model = files
    out = tmp_path / "out.csv"
    out.write_text("old\n")
    os.chmod(out, 0o600)
    os.chmod(model, 0o640)
    assert cli("predict", model, "--data", new, "--output", out).returncode == 0
    assert cli(*train(data), "--save", model).returncode == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600 and out.read_text() != "old\n"
    assert stat.S_IMODE(os.stat(model).st_mode) == 0o640


# -- the checkpoint of an interrupted regression -------------------------------------------------

def test_a_regression_checkpoint_is_refused_by_export(tmp_path, cli, monkeypatch):
    data = write_csv(tmp_path / "houses.csv")
    ckpt, onnx = tmp_path / "ck.npz", tmp_path / "ck.onnx"
    monkeypatch.setenv("FASTNN_TEST_INTERRUPT_AFTER_EPOCH", "1")
    interrupted = cli("train", "--data", data, "--target", "spend", *FAST, "--save", ckpt)
    assert interrupted.returncode == 130
    assert_user_error(cli("export", ckpt, "--output", onnx),
                      f"{ckpt} is the checkpoint of an interrupted regression run",
                      f"fastnn train --resume {ckpt}")
    assert not onnx.exists()
    # What the README says identifies such a file in Python (its predict is in standardised
    # units, which fastnn.load says).
    with pytest.warns(RuntimeWarning, match="standardised units"):
        net = fastnn.load(ckpt)
    assert "checkpoint" in net.extra and net.preprocessor.task == "regression"
