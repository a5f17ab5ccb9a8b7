"""``fastnn train --data``, ``fastnn evaluate --data`` and ``fastnn predict`` on tables written by
the tests (small, seeded): round trips for every table type, label names, the hostile tables, the
range warning, and a comparison with a scikit-learn pipeline."""
import csv
import io

import numpy as np
import pytest

import fastnn
from fastnn._cpulimits import available_cores
from synthetic import table
from test_cli import assert_user_error, last_json_line, run_cli
from test_tabular import write

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

FAST = ["--epochs", "8", "--hidden", "32", "--seed", "0"]
SUFFIXES = [".csv", ".tsv", ".parquet", ".npz"]


def read_csv_rows(text):
    return list(csv.reader(io.StringIO(text)))


def npz_table(n, seed, task):
    """An .npz table: X of three Gaussian clusters, y their text labels (classification) or a
    linear function of X (regression)."""
    centres = np.random.default_rng(0).standard_normal((3, 4)) * 3  # the same for every seed
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = (centres[y] + rng.standard_normal((n, 4))).astype(np.float32)
    if task == "classification":
        return {"X": X, "y": np.array(["ant", "bee", "cat"])[y]}
    return {"X": X, "y": X @ np.array([1.0, -2.0, 0.5, 3.0]) + 10}


def write_table(tmp_path, suffix, task, name="t", n=300, seed=0):
    if suffix == ".npz":
        return write(npz_table(n, seed, task), tmp_path / f"{name}.npz")
    return write(table(n, seed=seed), tmp_path / f"{name}{suffix}")


def target_of(suffix, task):
    return "y" if suffix == ".npz" else ("segment" if task == "classification" else "spend")


# -- round trips ----------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", SUFFIXES)
def test_classification_round_trip_keeps_label_names(tmp_path, cli, suffix):
    data = write_table(tmp_path, suffix, "classification")
    model = tmp_path / "m.npz"
    result = cli("train", "--data", data, "--target", target_of(suffix, "classification"),
                 *FAST, "--save", model, "--json")
    scores = result.json
    assert scores["test_accuracy"] > 0.85 and scores["task"] == "classification"
    # 0.2 held out, rounded class by class
    assert scores["test_samples"] + scores["train_samples"] == 300
    assert abs(scores["test_samples"] - 60) <= 2
    names = ["ant", "bee", "cat"] if suffix == ".npz" else ["bronze", "gold", "silver"]
    assert scores["classes"] == names

    new = write_table(tmp_path, suffix, "classification", name="new", n=40, seed=5)
    out = tmp_path / "pred.csv"
    predicted = cli("predict", model, "--data", new, "--output", out)
    assert predicted.returncode == 0, predicted.stderr
    rows = read_csv_rows(out.read_text())
    assert rows[0] == ["prediction"] and len(rows) == 41
    truth = (npz_table(40, 5, "classification")["y"] if suffix == ".npz"
             else table(40, seed=5)["segment"])
    labels = [r[0] for r in rows[1:]]
    assert set(labels) <= set(names)
    assert np.mean(np.array(labels) == truth) > 0.8  # one row per input row, in order

    evaluated = cli("evaluate", model, "--data", new, "--json").json
    assert evaluated["test_accuracy"] == pytest.approx(np.mean(np.array(labels) == truth))


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_regression_round_trip_reports_rmse_mae_r2(tmp_path, cli, suffix):
    data = write_table(tmp_path, suffix, "regression")
    model = tmp_path / "m.npz"
    target = target_of(suffix, "regression")
    scores = cli("train", "--data", data, "--target", target, *FAST, "--save", model,
                 "--json").json
    assert scores["task"] == "regression" and scores["classes"] is None
    assert {"test_rmse", "test_mae", "test_r2"} <= set(scores) and "test_accuracy" not in scores
    assert scores["test_r2"] > 0.8 and scores["config"]["loss"] == "mse"

    new = write_table(tmp_path, suffix, "regression", name="new", n=30, seed=6)
    predicted = cli("predict", model, "--data", new)
    rows = read_csv_rows(predicted.stdout)
    values = np.array([float(r[0]) for r in rows[1:]])
    truth = (npz_table(30, 6, "regression")["y"] if suffix == ".npz" else table(30, seed=6)["spend"])
    assert len(values) == 30

    evaluated = cli("evaluate", model, "--data", new, "--json")
    report = evaluated.json
    assert "test_accuracy" not in report
    err = values - truth
    assert report["test_rmse"] == pytest.approx(np.sqrt(np.mean(err ** 2)), rel=1e-5)
    assert report["test_mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-5)
    text = cli("evaluate", model, "--data", new).stdout
    assert "RMSE" in text and "R^2" in text and "accuracy" not in text


def test_proba_columns_are_per_class_and_agree_with_the_prediction(tmp_path, cli):
    data = write_table(tmp_path, ".csv", "classification")
    model = tmp_path / "m.npz"
    assert cli("train", "--data", data, "--target", "segment", *FAST, "--save", model,
               "--quiet").returncode == 0
    rows = read_csv_rows(cli("predict", model, "--data", data, "--proba").stdout)
    assert rows[0] == ["prediction", "proba_bronze", "proba_gold", "proba_silver"]
    p = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-5)
    assert [r[0] for r in rows[1:]] == [rows[0][1 + k][len("proba_"):] for k in p.argmax(axis=1)]


def test_bce_trains_one_output_for_two_classes(tmp_path, cli):
    t = table(300)
    t["segment"] = np.where(t["segment"] == "gold", "yes", "no")
    data = write(t, tmp_path / "b.csv")
    model = tmp_path / "m.npz"
    scores = cli("train", "--data", data, "--target", "segment", "--loss", "bce", *FAST,
                 "--save", model, "--json").json
    assert scores["test_accuracy"] > 0.85 and scores["parameters"] == 9 * 32 + 32 + 32 + 1
    rows = read_csv_rows(cli("predict", model, "--data", data, "--proba").stdout)
    assert rows[0] == ["prediction", "proba_no", "proba_yes"]
    assert {r[0] for r in rows[1:]} == {"no", "yes"}


def test_test_data_and_missing_mean_counts(tmp_path, cli):
    data = write(table(300, missing=0.1), tmp_path / "train.csv")
    test = write(table(100, seed=3, missing=0.1), tmp_path / "test.csv")
    result = cli("train", "--data", data, "--target", "segment", "--test-data", test,
                 "--missing", "mean", *FAST, "--json")
    scores = result.json
    assert scores["test_samples"] == 100 and scores["train_samples"] == 300
    t = table(300, missing=0.1)
    incomplete = int(sum(np.isnan(a) or c is None for a, c in zip(t["age"], t["city"])))
    assert scores["rows_imputed"] == incomplete and scores["rows_dropped"] == 0
    assert f"{incomplete} rows with missing values imputed" in result.stderr
    dropped = cli("train", "--data", data, "--target", "segment", *FAST)
    assert f"{incomplete} rows dropped for missing values" in dropped.stdout


def test_text_output_has_header_early_stopping_and_saved_lines(tmp_path, cli):
    data = write_table(tmp_path, ".csv", "classification")
    model = tmp_path / "m.npz"
    out = cli("train", "--data", data, "--target", "segment", "--epochs", "30", "--hidden", "16",
              "--val-split", "0.2", "--early-stopping", "1", "--dropout", "0.1",
              "--save", model).stdout
    header = next(line for line in out.splitlines() if line.startswith("training "))
    for part in ("he init", "dropout 0.1", "float32", "columns standardised", "loss cross_entropy"):
        assert part in header, header
    stop = next(line for line in out.splitlines() if line.startswith("early stopping"))
    assert "stopped after epoch" in stop and "kept the weights of epoch" in stop
    assert f"saved to {model}" in out


# -- hostile tables and options: one error line each ----------------------------------------------

def _hostile_files(tmp_path):
    t = table(60)
    files = {}
    (tmp_path / "empty.csv").write_bytes(b"")
    files["empty"] = (tmp_path / "empty.csv", "segment", "the file is empty")
    files["no target"] = (write(t, tmp_path / "t.csv"), "label", "no target column 'label'")
    one = dict(t, segment=np.array(["gold"] * 60))
    files["one class"] = (write(one, tmp_path / "one.csv"), "segment",
                          "target column 'segment' has one class ('gold')")
    holes = dict(t, age=np.where(np.arange(60) % 2 == 0, np.nan, t["age"]),
                 visits=np.where(np.arange(60) % 2 == 1, np.nan, t["visits"]))
    files["all rows missing"] = (write(holes, tmp_path / "holes.csv"), "segment",
                                 "every row has a missing value")
    mixed = dict(t, visits=np.array([str(v) for v in t["visits"][:-1]] + ["many"], dtype=object))
    files["mixed"] = (write(mixed, tmp_path / "mixed.csv"), "segment",
                      "column 'visits' mixes numbers and text")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("age,city,segment\n1,Lyon,a\n2,".encode() + "Besançon".encode("latin-1")
                      + b",b\n")
    files["not utf-8"] = (latin, "segment", "column 'city': byte 0xe7 is not UTF-8")
    return files


@pytest.mark.parametrize("case", ["empty", "no target", "one class", "all rows missing", "mixed",
                                  "not utf-8"])
def test_hostile_training_tables(tmp_path, cli, case):
    path, target, fragment = _hostile_files(tmp_path)[case]
    assert_user_error(cli("train", "--data", path, "--target", target, *FAST), fragment)


def test_hostile_prediction_tables(tmp_path, cli):
    model = tmp_path / "m.npz"
    assert cli("train", "--data", write(table(200), tmp_path / "t.csv"), "--target", "segment",
               *FAST, "--save", model, "--quiet").returncode == 0
    t = table(20, seed=2)
    no_plan = {k: v for k, v in t.items() if k != "plan"}
    assert_user_error(cli("predict", model, "--data", write(no_plan, tmp_path / "a.csv")),
                      "column 'plan' is missing")
    paris = dict(t, city=np.array(["Paris"] + list(t["city"][1:]), dtype=object))
    assert_user_error(cli("predict", model, "--data", write(paris, tmp_path / "b.csv")),
                      "column 'city': unknown category 'Paris' (row 1)")
    text_age = dict(t, age=np.array(["young"] * 20, dtype=object))
    assert_user_error(cli("predict", model, "--data", write(text_age, tmp_path / "c.csv")),
                      "column 'age': expected numbers")
    assert_user_error(cli("predict", model, "--data", tmp_path / "none.csv"), "no such file")
    assert_user_error(cli("predict", model, "--data", tmp_path), "is a directory")


def test_a_parquet_column_without_any_value(tmp_path, cli):
    data = write(table(200), tmp_path / "t.csv")
    mean, drop = tmp_path / "mean.npz", tmp_path / "drop.npz"
    for model, missing in ((mean, "mean"), (drop, "drop")):
        assert cli("train", "--data", data, "--target", "segment", "--missing", missing, *FAST,
                   "--save", model, "--quiet").returncode == 0
    new = pd.DataFrame(table(20, seed=2)).assign(age=pd.Series([None] * 20, dtype=object))
    new.to_parquet(tmp_path / "new.parquet")
    rows = read_csv_rows(cli("predict", mean, "--data", tmp_path / "new.parquet").stdout)
    assert rows[0] == ["prediction"] and len(rows) == 21
    scores = cli("evaluate", mean, "--data", tmp_path / "new.parquet", "--json").json
    assert scores["test_samples"] == 20
    assert_user_error(cli("predict", drop, "--data", tmp_path / "new.parquet"),
                      "column 'age': row 1 has no value")
    assert_user_error(cli("evaluate", drop, "--data", tmp_path / "new.parquet"),
                      "no row of the table is complete enough")  # rows dropped as in training


def test_a_column_name_that_appears_twice_is_one_error_line(tmp_path, cli):
    path = tmp_path / "dup.csv"
    path.write_text("a,a,y\n" + "".join(f"{i},{i + 5},{i % 2}\n" for i in range(20)))
    assert_user_error(cli("train", "--data", path, "--target", "y", *FAST),
                      "dup.csv: the column name 'a' appears twice")


def test_a_bool_target_keeps_true_and_false_as_class_names(tmp_path, cli):
    t = {k: v for k, v in table(200).items() if k != "spend"}
    t["churned"] = t.pop("segment") == "gold"
    data = write(t, tmp_path / "t.csv")
    model = tmp_path / "m.npz"
    trained = cli("train", "--data", data, "--target", "churned", *FAST, "--save", model)
    assert "(2 classes: False, True)" in trained.stdout
    rows = read_csv_rows(cli("predict", model, "--data", data, "--proba").stdout)
    assert rows[0] == ["prediction", "proba_False", "proba_True"]
    assert {r[0] for r in rows[1:]} == {"False", "True"}
    yes_no = dict(t, churned=np.where(t["churned"], "yes", "no"))
    other = tmp_path / "yes_no.npz"
    assert cli("train", "--data", write(yes_no, tmp_path / "yn.csv"), "--target", "churned",
               *FAST, "--save", other, "--quiet").returncode == 0
    first = "True" if t["churned"][0] else "False"
    assert_user_error(cli("evaluate", other, "--data", data),
                      f"target column 'churned': unknown class '{first}' (row 1)")


@pytest.mark.parametrize("args, fragment", [
    (["--target", "segment"], "--target applies to tables"),
    (["--data", "{csv}", "--target", "segment", "--test-split", "0.2", "--test-data", "{csv}"],
     "give --test-split or --test-data"),
    (["--data", "{csv}", "--target", "segment", "--loss", "bce"], "--loss bce needs a target with two"),
    (["--data", "{csv}", "--target", "spend", "--loss", "cross_entropy"], "is a regression"),
    (["--data", "{csv}"], "--target COLUMN is required"),
    (["--data", "{csv}", "--target", "segment", "--limit", "10"], "--limit applies to MNIST"),
    (["--data", "{csv}", "--target", "segment", "--data-dir", "{dir}"], "give --data or --data-dir"),
    (["--data", "{dir}/none.csv", "--target", "segment"], "--data: no such file or directory"),
    (["--data", "{csv}", "--target", "segment", "--test-data", "{dir}/none.csv"],
     "--test-data: no such file or directory"),
    (["--data", "{csv}", "--target", "segment", "--test-split", "0"],
     "--test-split: expected a number in (0, 1), got '0'"),
    (["--data", "{csv}", "--target", "segment", "--test-split", "1"],
     "--test-split: expected a number in (0, 1), got '1'"),
])
def test_option_conflicts(tmp_path, cli, args, fragment):
    csv_path = write(table(50), tmp_path / "t.csv")
    args = [a.format(csv=csv_path, dir=tmp_path) for a in args]
    assert_user_error(cli("train", *args, *FAST), fragment)


def test_errors_in_a_subprocess_are_one_line_and_status_2(tmp_path):
    proc = run_cli("train", "--data", write(table(30), tmp_path / "t.csv"), "--target", "nope")
    assert_user_error(proc, "no target column 'nope'")


@pytest.mark.skipif(available_cores()[0] < 2, reason="needs a default thread count above 1")
def test_threads_option_applies_to_a_table_run(tmp_path):
    data = write_table(tmp_path, ".npz", "classification")
    options = ["train", "--data", data, *FAST]
    defaults = {"FASTNN_NUM_THREADS": None, "OMP_NUM_THREADS": None}
    result = last_json_line(run_cli(*options, "--threads", "1", "--json", variables=defaults))
    assert result["config"]["threads"] == 1
    checkpoint = tmp_path / "ckpt.npz"
    interrupted = run_cli(*options, "--threads", "1", "--save", checkpoint,
                          variables=dict(defaults, FASTNN_TEST_INTERRUPT_AFTER_EPOCH="1"))
    assert interrupted.returncode == 130, interrupted.stderr
    assert fastnn.load(checkpoint).extra["checkpoint"]["threads"] == 1  # the count inside the fit
    too_many = available_cores()[0] + 1
    capped = run_cli(*options, "--threads", too_many, "--quiet", variables=defaults)
    assert capped.returncode == 0, capped.stderr
    assert capped.stderr.startswith(f"fastnn: warning: --threads {too_many}: more threads than")


# -- values beyond the range of the network's dtype -----------------------------------------------

def _rescaled_spend(largest):
    """table(200) with its regression target "spend" centred and scaled to reach ``largest``."""
    t = table(200)
    centred = t["spend"] - 50
    return dict(t, spend=centred * (largest / np.max(np.abs(centred))))


@pytest.mark.parametrize("largest", [1e39, 1e308])
def test_a_regression_target_beyond_float32_is_refused_naming_the_column(tmp_path, cli, largest):
    data = write(_rescaled_spend(largest), tmp_path / "t.csv")
    assert_user_error(cli("train", "--data", data, "--target", "spend", *FAST),
                      "target column 'spend'", "outside the float32 range (±3.403e+38)",
                      "train with --dtype float64")


def test_a_target_near_the_float64_limit_trains_as_well_as_a_small_one(tmp_path, cli):
    small = write(_rescaled_spend(40.0), tmp_path / "small.csv")
    huge = write(_rescaled_spend(1e308), tmp_path / "huge.csv")
    options = ["--target", "spend", "--dtype", "float64", *FAST, "--json"]
    reference = cli("train", "--data", small, *options).json
    result = cli("train", "--data", huge, *options)
    assert "warning" not in result.stderr
    assert result.json["test_r2"] == pytest.approx(reference["test_r2"], rel=1e-6)
    assert result.json["test_rmse"] == pytest.approx(reference["test_rmse"] * (1e308 / 40), rel=1e-6)


def test_outputs_that_overflow_when_rescaled_are_a_user_error(tmp_path, cli, monkeypatch):
    import fastnn.cli.tables
    monkeypatch.setattr(fastnn.cli.tables, "target_scaling", lambda y: (0.0, 1e39))
    data = write(table(200), tmp_path / "t.csv")
    assert_user_error(cli("train", "--data", data, "--target", "spend", *FAST),
                      "target column 'spend'", "overflow float32", "train with --dtype float64")


def test_an_input_column_near_the_float64_limit_trains_as_well_as_a_small_one(tmp_path, cli):
    t = table(200)
    small = cli("train", "--data", write(t, tmp_path / "small.csv"), "--target", "segment",
                *FAST, "--json").json
    huge = dict(t, age=t["age"] * 1e300)
    result = cli("train", "--data", write(huge, tmp_path / "huge.csv"), "--target", "segment",
                 *FAST, "--json").json
    assert result["test_accuracy"] == pytest.approx(small["test_accuracy"])


def test_test_inputs_beyond_the_dtype_once_standardised_are_a_user_error(tmp_path, cli):
    t = table(200)
    data = write(t, tmp_path / "t.csv")
    far = write(dict(t, age=t["age"] * 1e300), tmp_path / "far.csv")
    assert_user_error(cli("train", "--data", data, "--target", "spend", "--test-data", far, *FAST),
                      "--test-data: column 'age'", "float32 range", "train with --dtype float64")
    model = tmp_path / "m.npz"
    assert cli("train", "--data", data, "--target", "spend", *FAST, "--save", model,
               "--quiet").returncode == 0
    for command in ("evaluate", "predict"):
        assert_user_error(cli(command, model, "--data", far), "--data: column 'age'",
                          "float32 range")


# -- the range warning ----------------------------------------------------------------------------

def test_predicting_far_outside_the_training_range_warns_in_one_line(tmp_path, cli):
    model = tmp_path / "m.npz"
    assert cli("train", "--data", write(table(200), tmp_path / "t.csv"), "--target", "segment",
               *FAST, "--save", model, "--quiet").returncode == 0
    t = table(10, seed=3)
    normal = cli("predict", model, "--data", write(t, tmp_path / "ok.csv"))
    assert normal.returncode == 0 and normal.stderr == ""
    far = cli("predict", model, "--data", write(dict(t, age=t["age"] * 100), tmp_path / "far.csv"))
    assert far.returncode == 0
    lines = far.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastnn: warning: ") and "far outside" in lines[0]
    assert len(read_csv_rows(far.stdout)) == 11


def test_regression_checkpoint_is_refused_until_finished(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("FASTNN_TEST_INTERRUPT_AFTER_EPOCH", "2")
    data = write(table(200), tmp_path / "t.csv")
    ckpt = tmp_path / "ckpt.npz"
    interrupted = cli("train", "--data", data, "--target", "spend", *FAST, "--save", ckpt)
    assert interrupted.returncode == 130 and ckpt.exists()
    assert_user_error(cli("evaluate", ckpt, "--data", data), "checkpoint of an interrupted regression")
    monkeypatch.delenv("FASTNN_TEST_INTERRUPT_AFTER_EPOCH")
    resumed = cli("train", "--resume", ckpt, "--json").json
    straight = cli("train", "--data", data, "--target", "spend", *FAST, "--json").json
    assert resumed["test_rmse"] == straight["test_rmse"]  # the same weights, bit for bit
    assert cli("evaluate", ckpt, "--data", data).returncode == 0


# -- a real-looking table against scikit-learn ----------------------------------------------------

def test_accuracy_matches_a_scikit_learn_pipeline(tmp_path, cli, capsys):
    """Text labels, text features and missing values (generated, seeded): fastnn train --data
    reaches the test accuracy of StandardScaler + OneHotEncoder + MLPClassifier on the same split."""
    pytest.importorskip("sklearn")
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    t = table(1500, seed=11, missing=0.05)
    del t["spend"]
    train = write({k: v[:1200] for k, v in t.items()}, tmp_path / "train.csv")
    test = write({k: v[1200:] for k, v in t.items()}, tmp_path / "test.csv")
    ours = cli("train", "--data", train, "--test-data", test, "--target", "segment",
               "--missing", "mean", "--hidden", "64", "--epochs", "30", "--json").json

    frame_train, frame_test = pd.read_csv(train), pd.read_csv(test)
    numeric, text = ["age", "visits"], ["city", "plan"]
    pipe = make_pipeline(
        make_column_transformer(
            (make_pipeline(SimpleImputer(strategy="mean"), StandardScaler()), numeric),
            (OneHotEncoder(handle_unknown="ignore"), text)),
        MLPClassifier(hidden_layer_sizes=(64,), max_iter=1000, random_state=0))
    pipe.fit(frame_train[numeric + text], frame_train["segment"])
    theirs = pipe.score(frame_test[numeric + text], frame_test["segment"])
    with capsys.disabled():  # shown with pytest -s
        print(f"\ntest accuracy: fastnn {ours['test_accuracy']:.4f}, scikit-learn {theirs:.4f}")
    assert ours["test_accuracy"] >= theirs - 0.03

    out = tmp_path / "pred.csv"
    assert cli("predict", tmp_path / "none.npz", "--data", test).returncode == 2
    model = tmp_path / "m.npz"
    cli("train", "--data", train, "--test-data", test, "--target", "segment", "--missing", "mean",
        "--hidden", "64", "--epochs", "30", "--save", model, "--quiet")
    assert cli("predict", model, "--data", test, "--output", out).returncode == 0
    labels = [r[0] for r in read_csv_rows(out.read_text())[1:]]
    assert np.mean(np.array(labels) == frame_test["segment"].to_numpy()) == pytest.approx(
        ours["test_accuracy"])


# -- models of arrays (no preprocessor) -----------------------------------------------------------

def _pixel_model(tmp_path):
    """A model trained in Python with input_scale=1/255 on uint8 "pixels", and its data."""
    import fastnn
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(400, 16)).astype(np.uint8)
    y = (x[:, :8].mean(axis=1) > x[:, 8:].mean(axis=1)).astype(np.int64)
    net = fastnn.Network([fastnn.Linear(16, 16), fastnn.ReLU(), fastnn.Linear(16, 2)],
                         input_scale=1 / 255, seed=0)
    net.fit(x, y, epochs=20, progress=False)
    net.save(tmp_path / "pixels.npz")
    return tmp_path / "pixels.npz", x, y, net


def test_predict_an_npz_with_a_model_of_arrays(tmp_path, cli):
    model, x, y, net = _pixel_model(tmp_path)
    data = write({"X": x[:50]}, tmp_path / "x.npz")
    result = cli("predict", model, "--data", data, "--proba")
    assert result.returncode == 0 and result.stderr == ""
    rows = read_csv_rows(result.stdout)
    assert rows[0] == ["prediction", "proba_0", "proba_1"]
    assert [int(r[0]) for r in rows[1:]] == net.predict(x[:50]).tolist()
    report = cli("evaluate", model, "--data", write({"X": x, "y": y}, tmp_path / "xy.npz"), "--json")
    assert report.json["test_accuracy"] == pytest.approx(net.evaluate(x, y)[1])


def test_nan_or_overflowing_arrays_for_a_model_of_arrays_are_a_user_error(tmp_path, cli):
    model, x, y, _ = _pixel_model(tmp_path)
    holes = x[:20].astype(np.float64)
    holes[3, 5] = np.nan
    huge = x[:20] * 1e300  # x / 255 is still beyond float32
    for command in ("predict", "evaluate"):
        assert_user_error(cli(command, model, "--data", write({"X": holes, "y": y[:20]},
                                                              tmp_path / "holes.npz")),
                          "X holds 1 NaN or infinite value(s), the first in row 4, column x5")
        assert_user_error(cli(command, model, "--data", write({"X": huge, "y": y[:20]},
                                                              tmp_path / "huge.npz")),
                          "--data: column 'x", "once scaled for the model", "float32 range")


def test_pixels_divided_by_255_twice_warn_in_one_line(tmp_path, cli):
    model, x, _, _ = _pixel_model(tmp_path)
    data = write({"X": x[:20] / 255.0}, tmp_path / "scaled.npz")
    result = cli("predict", model, "--data", data)
    assert result.returncode == 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastnn: warning: ")
    assert "was the data scaled already" in lines[0]
    assert len(read_csv_rows(result.stdout)) == 21


def test_predict_the_test_images_of_an_idx_directory(tmp_path, cli):
    from test_cli import make_dataset
    directory = make_dataset(str(tmp_path), compress=False)
    model = tmp_path / "idx.npz"
    assert cli("train", "--data", directory, "--epochs", "2", "--hidden", "16", "--save", model,
               "--quiet").returncode == 0
    rows = read_csv_rows(cli("predict", model, "--data", directory).stdout)
    assert len(rows) == 201 and {r[0] for r in rows[1:]} <= {str(k) for k in range(10)}
    assert_user_error(cli("predict", model, "--data", write(table(5), tmp_path / "t.csv")),
                      "not trained on a table")


def test_ignore_leaves_columns_out(tmp_path, cli):
    t = table(200)
    t["name"] = np.array([f"customer {i}" for i in range(200)], dtype=object)
    data = write(t, tmp_path / "t.csv")
    model = tmp_path / "m.npz"
    scores = cli("train", "--data", data, "--target", "segment", "--ignore", "name", "spend",
                 *FAST, "--save", model, "--json").json
    assert scores["inputs"] == 2 + 4 + 2 and scores["config"]["ignore"] == ["name", "spend"]
    new = {k: v for k, v in table(10, seed=4).items() if k not in ("spend", "segment")}
    assert cli("predict", model, "--data", write(new, tmp_path / "new.csv")).returncode == 0


def test_missing_pandas_is_one_line_naming_the_extra(tmp_path):
    data = write(table(20), tmp_path / "t.csv")
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "pandas.py").write_text("raise ImportError('simulated: no pandas')\n")
    proc = run_cli("train", "--data", data, "--target", "segment", extra_path=[str(shim)])
    assert_user_error(proc, 'pip install ".[tables]"', "pandas and pyarrow")


def test_task_override_dtype_and_a_regression_plot(tmp_path, cli):
    pytest.importorskip("matplotlib")
    t = table(200)
    t["rating"] = t["visits"] // 6  # 5 integers: guessed a classification
    data = write(t, tmp_path / "t.csv")
    guessed = cli("train", "--data", data, "--target", "rating", *FAST, "--json").json
    assert guessed["task"] == "classification" and guessed["classes"] == ["0", "1", "2", "3", "4"]
    png = tmp_path / "curves.png"
    scores = cli("train", "--data", data, "--target", "rating", "--task", "regression",
                 "--dtype", "float64", *FAST, "--plot", png, "--json").json
    assert scores["task"] == "regression" and "test_r2" in scores
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    forced = cli("train", "--data", data, "--target", "spend", "--task", "classification", *FAST)
    assert_user_error(forced, "each of the", "classes of 'spend' has one row")


def test_a_table_model_exports_to_onnx_taking_raw_columns(tmp_path, cli):
    # The real TablePreprocessor (numeric and text columns, missing values imputed), through
    # fastnn train / export / predict, against ONNX Runtime fed the raw columns.
    ort = pytest.importorskip("onnxruntime")
    data = write(table(300, seed=0, missing=0.1), tmp_path / "t.csv")
    model, graph = tmp_path / "m.npz", tmp_path / "m.onnx"
    assert cli("train", "--data", data, "--target", "segment", "--missing", "mean", "--ignore",
               "spend", *FAST, "--save", model).returncode == 0
    assert cli("export", model, "--output", graph).returncode == 0
    new = table(25, seed=3, missing=0.1)
    out = tmp_path / "pred.csv"
    assert cli("predict", model, "--data", write(new, tmp_path / "new.csv"), "--proba",
               "--output", out).returncode == 0
    rows = read_csv_rows(out.read_text())
    expected_labels = [r[0] for r in rows[1:]]
    expected_proba = np.array([[float(v) for v in r[1:]] for r in rows[1:]])

    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    feeds = {}
    for node in session.get_inputs():
        values = new[node.name]
        if node.type == "tensor(string)":
            feeds[node.name] = np.array([["" if v is None else v] for v in values], dtype=object)
        else:
            feeds[node.name] = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    label, proba = session.run(None, feeds)
    assert label.tolist() == expected_labels
    np.testing.assert_allclose(proba, expected_proba, atol=1e-5)
