"""fastnn.tabular: reading tables, TablePreprocessor's rules and errors, and the training range
that Network.predict warns about."""
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastnn
from fastnn.errors import MissingExtra, TableError
from fastnn.tabular import (TablePreprocessor, read_table, regression_metrics, stratified_split,
                            target_scaling, unscale_outputs)
from synthetic import blobs, table

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write(frame, path):
    """Write a dict of columns as the table type of path's suffix; returns path."""
    path = str(path)
    if path.endswith(".npz"):
        np.savez(path, **frame)
    elif path.endswith(".parquet"):
        pd.DataFrame(frame).to_parquet(path)
    else:
        pd.DataFrame(frame).to_csv(path, index=False, sep="\t" if path.endswith(".tsv") else ",")
    return path


# -- reading --------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_text_and_parquet_tables_read_the_same(tmp_path, suffix):
    t = table(50, missing=0.1)
    frame = read_table(write(t, tmp_path / f"t{suffix}"))
    assert list(frame.columns) == list(t)
    np.testing.assert_allclose(frame["age"].to_numpy(), t["age"], rtol=1e-12)  # NaN == NaN
    assert frame["city"].isna().sum() == sum(v is None for v in t["city"])
    assert list(frame["segment"]) == list(t["segment"])


def test_npz_table_is_columns_of_x_and_y(tmp_path):
    X, y = blobs(30, 3)
    columns = read_table(write({"X": X, "y": y}, tmp_path / "t.npz"))
    assert list(columns) == ["x0", "x1", "x2", "y"]
    np.testing.assert_array_equal(columns["x1"], X[:, 1])
    np.testing.assert_array_equal(columns["y"], y)


def test_reading_a_table_does_not_need_pandas_at_import():
    code = ("import sys, fastnn, fastnn.tabular, fastnn.cli; "
            "print('pandas' in sys.modules, 'pyarrow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=REPO_ROOT)
    assert result.stdout.split() == ["False", "False"]


def test_missing_pandas_names_the_extra(tmp_path, monkeypatch):
    path = write(table(10), tmp_path / "t.csv")
    monkeypatch.setitem(sys.modules, "pandas", None)  # makes "import pandas" fail
    with pytest.raises(MissingExtra, match=r'pip install "\.\[tables\]"'):
        read_table(path)


# -- the preprocessing rules ----------------------------------------------------------------------

def test_numbers_are_standardised_and_text_one_hot_in_the_documented_order():
    t = table(200)
    p = TablePreprocessor()
    X, y, kept = p.fit_transform(t, "segment")
    assert p.feature_columns == ["age", "visits", "city", "plan", "spend"]
    assert p.numeric_columns == ["age", "visits", "spend"]
    assert p.categorical_columns == ["city", "plan"]
    assert p.categories == [["Lyon", "Oslo", "Porto", "Quito"], ["basic", "pro"]]
    assert p.task == "classification" and p.classes == ["bronze", "gold", "silver"]
    for j, name in enumerate(p.numeric_columns):
        v = np.asarray(t[name], np.float64)
        assert p.means[j] == pytest.approx(v.mean()) and p.scales[j] == pytest.approx(v.std())
        np.testing.assert_allclose(X[:, j], (v - v.mean()) / v.std())
    city = X[:, 3:7]
    np.testing.assert_array_equal(city.argmax(axis=1), [p.categories[0].index(c) for c in t["city"]])
    assert (city.sum(axis=1) == 1).all() and X.shape == (200, 3 + 4 + 2) == (200, p.n_inputs)
    np.testing.assert_array_equal(y, [p.classes.index(s) for s in t["segment"]])
    np.testing.assert_array_equal(kept, np.arange(200))
    np.testing.assert_allclose(p.input_range, np.stack([X.min(0), X.max(0)], axis=1))


def test_constant_column_has_scale_one():
    p = TablePreprocessor().fit({"c": np.full(5, 3.0), "y": np.array(["a", "b"] * 2 + ["a"])}, "y")
    assert p.scales.tolist() == [1.0] and p.means.tolist() == [3.0]


def test_missing_mean_imputes_and_drop_drops():
    t = table(300, missing=0.1)
    n_missing_rows = int(sum(np.isnan(a) or c is None for a, c in zip(t["age"], t["city"])))
    dropped = TablePreprocessor(missing="drop")
    X, _, kept = dropped.fit_transform(t, "segment")
    assert len(kept) == 300 - n_missing_rows == len(X) and dropped.n_dropped == n_missing_rows
    imputed = TablePreprocessor(missing="mean")
    X, _, kept = imputed.fit_transform(t, "segment")
    assert len(kept) == 300 and imputed.n_imputed == n_missing_rows
    no_age = np.isnan(t["age"])
    assert (X[no_age, 0] == 0).all()  # the training mean, after scaling
    assert imputed.means[0] == pytest.approx(np.nanmean(t["age"]))
    no_city = np.array([c is None for c in t["city"]])
    assert (X[no_city, 3:7] == 0).all() and (X[~no_city, 3:7].sum(axis=1) == 1).all()


def test_drop_model_refuses_missing_values_at_prediction():
    t = table(100, missing=0.1)
    p = TablePreprocessor(missing="drop").fit(t, "segment")
    with pytest.raises(TableError, match="column 'age': row .* no value.*--missing mean"):
        p.transform(t)


@pytest.mark.parametrize("target, task, classes", [
    (np.array(["b", "a", "b"]), "classification", ["a", "b"]),
    (np.array([True, False, True]), "classification", ["False", "True"]),
    (np.array([10, 2, 1, 2]), "classification", ["1", "2", "10"]),  # numeric order
    (np.array([1.0, 2.0, 2.0, 1.0]), "classification", ["1", "2"]),
    (np.arange(21), "regression", None),  # more than 20 integers
    (np.array([0.5, 1.25, 2.0]), "regression", None),
])
def test_task_is_guessed_from_the_target(target, task, classes):
    p = TablePreprocessor().fit({"x": np.arange(len(target), dtype=float), "t": target}, "t")
    assert (p.task, p.classes) == (task, classes)


def test_task_can_be_overridden():
    frame = {"x": np.arange(6.0), "t": np.array([1, 2, 3, 1, 2, 3])}
    assert TablePreprocessor(task="regression").fit(frame, "t").task == "regression"
    with pytest.raises(TableError, match="target column 't' holds text.*regression needs numbers"):
        TablePreprocessor(task="regression").fit({"x": np.arange(2.0), "t": np.array(["a", "b"])}, "t")


def test_to_dict_is_json_and_round_trips_exactly():
    t = table(120, missing=0.1)
    p = TablePreprocessor(missing="mean").fit(t, "spend")
    d = json.loads(json.dumps(p.to_dict(), allow_nan=False))
    q = TablePreprocessor.from_dict(d)
    assert q.to_dict() == p.to_dict()
    np.testing.assert_array_equal(q.transform(t), p.transform(t))
    assert q.task == "regression" and q.classes is None and q.target == "spend"


def test_from_dict_rejects_inconsistent_descriptions():
    d = TablePreprocessor().fit(table(50), "segment").to_dict()
    with pytest.raises(ValueError, match="means/scales"):
        TablePreprocessor.from_dict({**d, "means": d["means"][:-1]})
    with pytest.raises(ValueError, match="input_range"):
        TablePreprocessor.from_dict({**d, "input_range": d["input_range"][:-1]})


# -- hostile tables: one clear error each, naming the column --------------------------------------

def _fit_error(frame, target="y", **kwargs):
    with pytest.raises(TableError) as info:
        TablePreprocessor(**kwargs).fit(frame, target)
    return str(info.value)


def test_hostile_fits():
    assert "no target column 'label'" in _fit_error({"x": np.arange(3.0), "y": np.arange(3)}, "label")
    assert "target column 'y' has one class ('a')" in _fit_error(
        {"x": np.arange(3.0), "y": np.array(["a", "a", "a"])})
    message = _fit_error({"x": np.array([np.nan, 1.0]), "z": np.array([2.0, np.nan]),
                          "y": np.array(["a", "b"])})
    assert "every row has a missing value" in message and "column 'x'" in message
    assert "column 'x' has no values" in _fit_error(
        {"x": np.full(3, np.nan), "y": np.array(["a", "b", "a"])}, missing="mean")
    assert "column 'x' mixes numbers and text" in _fit_error(
        {"x": np.array(["1.5", "abc", "2"], dtype=object), "y": np.array(["a", "b", "a"])})
    assert "column 'x' mixes numbers and text" in _fit_error(
        {"x": np.array([1.5, "abc", 2], dtype=object), "y": np.array(["a", "b", "a"])})
    assert "column 'x': row 2 is inf" in _fit_error(
        {"x": np.array([1.0, np.inf]), "y": np.array(["a", "b"])})


def test_columns_of_a_dict_must_be_1d_and_of_equal_length():
    y = np.array(["a", "b"] * 3)
    with pytest.raises(TableError, match="column 'z' has length 5 but column 'x' has length 6; "
                                         "the columns of a table must have equal lengths"):
        TablePreprocessor().fit({"x": np.arange(6.0), "z": np.arange(5.0), "y": y}, "y")
    with pytest.raises(TableError, match="column 'y' has length 5 but column 'x' has length 6"):
        TablePreprocessor().fit({"x": np.arange(6.0), "y": y[:5]}, "y")
    with pytest.raises(TableError, match=r"column 'x': expected a 1-D column \(one value per "
                                         r"row\), got shape \(6, 2\)"):
        TablePreprocessor().fit({"x": np.ones((6, 2)), "y": y}, "y")
    with pytest.raises(TableError, match="column 'x': .* got nested sequences of different lengths"):
        TablePreprocessor().fit({"x": [[1.0], [2.0, 3.0]], "y": y[:2]}, "y")
    with pytest.raises(TypeError, match="column 'x': expected a 1-D column .* got float 1.5"):
        TablePreprocessor().fit({"x": 1.5, "y": y}, "y")
    assert TablePreprocessor().fit({"x": np.arange(6.0), "id": 7, "y": y}, "y",
                                   ignore="id").feature_columns == ["x"]  # ignored: not checked


def test_transforming_scalars_or_columns_of_unequal_lengths_names_the_column():
    p = TablePreprocessor().fit({"x": np.arange(6.0), "z": np.arange(6.0),
                                 "y": np.array(["a", "b"] * 3)}, "y")
    with pytest.raises(TypeError, match=r"column 'x': .* \[value\] for one row\), got float 1.0"):
        p.transform({"x": 1.0, "z": 2.0})
    assert p.transform({"x": [1.0], "z": [2.0]}).shape == (1, 2)
    with pytest.raises(TableError, match="column 'z' has length 1 but column 'x' has length 2"):
        p.transform({"x": [1.0, 2.0], "z": [2.0]})
    with pytest.raises(TableError, match="column 'y' has length 1 but column 'x' has length 2"):
        p.transform_xy({"x": [1.0, 2.0], "z": [2.0, 3.0], "y": ["a"]})


def test_hostile_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(TableError, match="empty.csv: the file is empty"):
        read_table(empty)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("x,city,y\n1,Lyon,a\n2,".encode() + "Besançon".encode("latin-1") + b",b\n")
    with pytest.raises(TableError, match="line 3, column 'city': byte 0xe7 is not UTF-8"):
        read_table(latin)
    with pytest.raises(TableError, match="unknown table type '.xlsx'"):
        read_table(tmp_path / "t.xlsx")
    header_only = tmp_path / "header.csv"
    header_only.write_text("x,y\n")
    with pytest.raises(TableError, match="no rows"):
        TablePreprocessor().fit(read_table(header_only), "y")


def test_hostile_predictions():
    p = TablePreprocessor().fit(table(100), "segment")
    t = table(10, seed=1)
    without = {k: v for k, v in t.items() if k != "plan"}
    with pytest.raises(TableError, match="column 'plan' is missing from the table"):
        p.transform(without)
    t["city"] = t["city"].copy()
    t["city"][4] = "Paris"
    with pytest.raises(TableError, match="column 'city': unknown category 'Paris' \\(row 5\\)"):
        p.transform(t)
    t = table(10, seed=1)
    t["age"] = np.array(["old"] * 10, dtype=object)
    with pytest.raises(TableError, match="column 'age': expected numbers, as in training, got text"):
        p.transform(t)


def test_a_column_without_any_value_is_imputed_or_refused_by_row():
    mean = TablePreprocessor(missing="mean").fit(table(100), "segment")
    drop = TablePreprocessor().fit(table(100), "segment")
    t = table(4, seed=1)
    nothing = {"age": [None] * 4, "city": np.full(4, None, dtype=object)}
    for frame in ({**t, **nothing}, pd.DataFrame({**t, **nothing})):
        X = mean.transform(frame)
        assert (X[:, 0] == 0).all() and (X[:, 3:7] == 0).all()  # the mean; no category
        np.testing.assert_array_equal(X[:, [1, 2, 7, 8]], mean.transform(t)[:, [1, 2, 7, 8]])
        with pytest.raises(TableError, match="column 'age': row 1 has no value"):
            drop.transform(frame)


def test_column_names_are_text_in_fit_transform_and_the_saved_model():
    frame = pd.DataFrame(np.random.default_rng(0).random((20, 2)))
    frame["y"] = [0, 1] * 10
    p = TablePreprocessor().fit(frame, "y")
    assert p.feature_columns == ["0", "1"] and p.to_dict()["numeric_columns"] == ["0", "1"]
    X = p.transform(frame)
    np.testing.assert_array_equal(p.transform({"0": frame[0], "1": frame[1]}), X)
    np.testing.assert_array_equal(p.transform({0: frame[0], 1: frame[1]}), X)
    np.testing.assert_array_equal(TablePreprocessor.from_dict(p.to_dict()).transform(frame), X)
    assert TablePreprocessor().fit(frame, "y", ignore="1").feature_columns == ["0"]
    with pytest.raises(TypeError, match=r"target: expected a column name \(str\), got int 1"):
        TablePreprocessor().fit(frame, 1)
    with pytest.raises(TypeError, match=r"ignore: expected column names \(str\), got int 1"):
        TablePreprocessor().fit(frame, "y", ignore=[1])


def test_a_column_name_that_appears_twice_is_an_error(tmp_path):
    y = np.array(["a", "b"] * 3)
    twice = pd.DataFrame(np.arange(12.0).reshape(6, 2), columns=["x", "x"]).assign(y=y)
    with pytest.raises(TableError, match="frame: the column name 'x' appears twice"):
        TablePreprocessor().fit(twice, "y")
    p = TablePreprocessor().fit(twice.iloc[:, 1:], "y")
    with pytest.raises(TableError, match="frame: the column name 'x' appears twice"):
        p.transform(twice)
    with pytest.raises(TableError, match="frame: the column name 'y' appears twice"):
        p.transform_xy(pd.concat([twice.iloc[:, 1:], twice[["y"]]], axis=1))
    with pytest.raises(TableError, match="frame: the column name '1' appears twice"):
        TablePreprocessor().fit({1: np.arange(6.0), "1": np.arange(6.0), "y": y}, "y")
    path = tmp_path / "t.csv"
    path.write_text("a,a,y\n1,5,0\n2,6,1\n")
    with pytest.raises(TableError, match="t.csv: the column name 'a' appears twice"):
        read_table(path)
    path.write_text("a,a.1,y\n1,5,0\n2,6,1\n")  # the name pandas gives a repeated "a"
    assert list(read_table(path).columns) == ["a", "a.1", "y"]


def test_a_bool_target_has_classes_false_and_true():
    frame = {"x": np.arange(6.0), "churned": np.array([True, False] * 3)}
    p = TablePreprocessor().fit(frame, "churned")
    assert p.classes == ["False", "True"]
    _, y, _ = p.transform_xy(frame)
    np.testing.assert_array_equal(y, [1, 0] * 3)
    with_gap = pd.DataFrame({"x": np.arange(3.0), "churned": [True, None, False]})
    assert p.transform_xy(with_gap)[1].tolist() == [1, 0]  # an object column of bools
    yes_no = TablePreprocessor().fit({"x": np.arange(4.0), "churned": ["no", "yes"] * 2}, "churned")
    with pytest.raises(TableError, match=r"unknown class 'True' \(row 1\)"):
        yes_no.transform_xy(frame)


def test_nan_and_none_in_a_list_of_text_are_missing_values():
    p = TablePreprocessor(missing="mean").fit({"city": ["Lyon", np.nan, "Oslo", None],
                                               "y": [0, 1, 0, 1]}, "y")
    assert p.categories == [["Lyon", "Oslo"]] and p.n_imputed == 2
    assert p.transform({"city": [np.nan, "Oslo", None]}).tolist() == [[0, 0], [0, 1], [0, 0]]
    with pytest.raises(TableError, match="column 'city': row 2 has no value"):
        TablePreprocessor().fit({"city": ["Lyon", "Oslo"] * 2, "y": [0, 1] * 2},
                                "y").transform({"city": ["Lyon", np.nan]})
    with pytest.raises(TableError, match="column 'c' mixes numbers and text"):
        TablePreprocessor().fit({"c": ["Lyon", 1.5, "Oslo"], "y": [0, 1, 0]}, "y")


@pytest.mark.parametrize("frame, came", [
    ([[1, 2, 3]], "list"), (None, "NoneType"),
    (np.zeros(2, dtype=[("x", float), ("z", float)]), "ndarray"), (pd.Series([1.0]), "Series")])
def test_a_frame_that_is_not_a_table_is_a_type_error(frame, came):
    p = TablePreprocessor().fit({"x": np.arange(4.0), "z": np.arange(4.0), "y": [0, 1] * 2}, "y")
    expected = (r"frame: expected a pandas DataFrame or a dict of 1-D columns \(name: values\), "
                f"got {came}")
    for method in (p.transform, p.transform_xy, lambda f: TablePreprocessor().fit(f, "y")):
        with pytest.raises(TypeError, match=expected):
            method(frame)


def test_a_column_read_as_numbers_matches_text_categories():
    frame = {"code": np.array(["1", "2", "x", "1"], dtype=object), "y": np.array(["a", "b"] * 2)}
    with pytest.raises(TableError, match="mixes numbers and text"):
        TablePreprocessor().fit(frame, "y")
    p = TablePreprocessor().fit({"code": np.array(["A1", "B2"] * 2, dtype=object),
                                 "y": np.array(["a", "b"] * 2)}, "y")
    assert p.transform({"code": np.array(["B2"], dtype=object)}).tolist() == [[0.0, 1.0]]


# -- training helpers -----------------------------------------------------------------------------

def test_stratified_split_keeps_class_shares_and_is_seeded():
    y = np.repeat([0, 1, 2], [50, 30, 20])
    train, test = stratified_split(y, 0.2, seed=3)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(100))
    assert np.bincount(y[test]).tolist() == [10, 6, 4]
    again = stratified_split(y, 0.2, seed=3)
    assert (again[1] == test).all() and not (stratified_split(y, 0.2, seed=4)[1] == test).all()
    train, test = stratified_split(np.arange(10.0), 0.3, seed=0, stratify=False)
    assert len(test) == 3 and len(train) == 7


def test_unscale_outputs_gives_the_targets_units():
    net = fastnn.Network([fastnn.Linear(3, 4), fastnn.ReLU(), fastnn.Linear(4, 1)],
                         loss=fastnn.MSE(), dtype="float64", seed=0)
    X = np.random.default_rng(0).normal(size=(5, 3))
    before = net.predict(X)
    mean, scale = target_scaling(np.array([10.0, 20.0, 30.0]))
    unscale_outputs(net, mean, scale)
    np.testing.assert_allclose(net.predict(X), before * scale + mean)


def test_unscale_outputs_refuses_units_beyond_the_dtype_and_leaves_the_network():
    net = fastnn.Network([fastnn.Linear(3, 1)], loss=fastnn.MSE(), seed=0)
    W, b = net.layers[0].W.copy(), net.layers[0].b.copy()
    with pytest.raises(ValueError, match=r"mean 0, scale 1e\+39: .* overflow float32 .*"
                                         "train a float64 network"):
        unscale_outputs(net, 0.0, 1e39)
    assert (net.layers[0].W == W).all() and (net.layers[0].b == b).all()


def test_statistics_of_values_near_the_float64_limit_are_finite():
    y = np.array([1e308, -1e308, 1e308, -1e308])
    assert target_scaling(y) == (0.0, 1e308)
    rng = np.random.default_rng(0)
    frame = {"x": rng.normal(size=50), "y": rng.normal(size=50)}
    X = TablePreprocessor().fit_transform(frame, "y")[0]
    huge = TablePreprocessor().fit_transform(dict(frame, x=frame["x"] * 1e300), "y")[0]
    np.testing.assert_allclose(huge, X, rtol=1e-12)


def test_regression_metrics_of_values_near_the_float64_limit_are_finite():
    m = regression_metrics(np.array([1e300, -1e300, 0.0]), np.array([-1e300, 1e300, 0.0]))
    assert m == pytest.approx({"rmse": 2e300 * np.sqrt(2 / 3), "mae": 4e300 / 3, "r2": -3.0})


@pytest.mark.parametrize("predicted, r2", [([3.0, 3.0, 3.0], 1.0), ([3.0, 2.5, 3.0], 0.0)])
def test_r2_of_a_constant_target_follows_scikit_learn(predicted, r2):
    """No variance to explain: 1.0 when every prediction is exact, else 0.0 (as scikit-learn's
    r2_score), not NaN (null in JSON)."""
    from sklearn.metrics import r2_score
    y = np.array([3.0, 3.0, 3.0])
    assert regression_metrics(np.array(predicted), y)["r2"] == r2 == r2_score(y, predicted)


# -- the training range and its warning -----------------------------------------------------------

def _pixels_model():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(300, 16)).astype(np.uint8)
    y = (x[:, 0] > 127).astype(np.int64)
    net = fastnn.Network([fastnn.Linear(16, 8), fastnn.ReLU(), fastnn.Linear(8, 2)],
                         input_scale=1 / 255, seed=0)
    net.fit(x, y, epochs=1, progress=False)
    return net, x


def _range_warnings(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def test_training_range_is_recorded_after_input_scaling():
    net, x = _pixels_model()
    np.testing.assert_allclose(net.input_range, np.stack([x.min(0), x.max(0)], axis=1) / 255)


def test_pixels_divided_twice_warn_once_and_normal_inputs_do_not():
    net, x = _pixels_model()
    assert _range_warnings(lambda: net.predict(x[:50])) == []
    scaled = x[:50] / 255.0
    messages = _range_warnings(lambda: net.predict(scaled))
    assert len(messages) == 1 and "was the data scaled already" in messages[0]
    messages = _range_warnings(lambda: net.predict_proba(x[:1].astype(np.float64) * 100))
    assert len(messages) == 1 and "far outside the range seen in training" in messages[0]


def test_training_range_and_preprocessor_survive_save_and_load(tmp_path):
    net, x = _pixels_model()
    net.save(tmp_path / "m.npz")
    loaded = fastnn.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.input_range, net.input_range)
    assert loaded.preprocessor is None
    assert len(_range_warnings(lambda: loaded.predict(x[:3] / 255.0))) == 1

    t = table(80)
    p = TablePreprocessor().fit(t, "segment")
    tab = fastnn.Network([fastnn.Linear(p.n_inputs, 3)], seed=0)
    tab.preprocessor = p
    tab.save(tmp_path / "t.npz")
    back = fastnn.load(tmp_path / "t.npz")
    assert back.preprocessor.to_dict() == p.to_dict()


def test_version_1_model_files_still_load(tmp_path):
    from fastnn import serialization
    net = fastnn.Network([fastnn.Linear(4, 2)], seed=0)
    path = tmp_path / "old.npz"
    header = {"format": "fastnn-model", "format_version": 1, "dtype": "float32",
              "input_scale": 1.0, "input_shift": 0.0, "n_features": 4, "n_outputs": 2,
              "loss": {"type": "SoftmaxCrossEntropy", "config": {}},
              "layers": [{"type": "Linear", "config": net.layers[0].get_config(),
                          "params": ["layers.0.W", "layers.0.b"]}],
              "arrays": {"layers.0.W": {"shape": [4, 2], "dtype": "float32"},
                         "layers.0.b": {"shape": [2], "dtype": "float32"}},
              "optimizer": None, "extra": None}
    arrays = {"layers.0.W": net.layers[0].W, "layers.0.b": net.layers[0].b}
    header["sha256"] = serialization._digest(list(arrays), arrays)
    np.savez(path, __header__=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)
    old = fastnn.load(path)
    assert old.input_range is None and old.preprocessor is None
    np.testing.assert_array_equal(old.layers[0].W, net.layers[0].W)


def _saved_with_preprocessor(path, description, n_inputs, n_outputs=3):
    """A model file whose header holds ``description`` as its preprocessor: written by saving a
    plain network and editing the header, since save itself refuses a preprocessor that does
    not fit."""
    from fastnn.serialization import _digest
    fastnn.Network([fastnn.Linear(n_inputs, n_outputs)], seed=0).save(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays.pop("__header__").tobytes())
    header["preprocessor"] = description
    header["sha256"] = _digest(list(header["arrays"]), arrays)
    np.savez(path, __header__=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)


def test_damaged_preprocessor_in_a_model_file_is_a_format_error(tmp_path):
    p = TablePreprocessor().fit(table(40), "segment")
    _saved_with_preprocessor(tmp_path / "bad.npz", p.to_dict(), p.n_inputs + 1)  # one input too many
    with pytest.raises(fastnn.ModelFormatError, match="preprocessor makes"):
        fastnn.load(tmp_path / "bad.npz")


def test_ignored_columns_are_not_inputs_and_identifiers_are_refused():
    t = table(60)
    t["name"] = np.array([f"customer {i}" for i in range(60)], dtype=object)
    p = TablePreprocessor().fit(t, "segment", ignore=["name", "spend"])
    assert p.feature_columns == ["age", "visits", "city", "plan"]
    assert p.transform({k: v for k, v in t.items() if k != "name"}).shape == (60, p.n_inputs)
    with pytest.raises(TableError, match="cannot ignore column 'segment': it is the target"):
        TablePreprocessor().fit(t, "segment", ignore=["segment"])
    many = {"id": np.array([f"id{i}" for i in range(1200)], dtype=object),
            "y": np.array(["a", "b"] * 600)}
    with pytest.raises(TableError, match="column 'id' has 1,200 distinct texts.*--ignore id"):
        TablePreprocessor().fit(many, "y")


@pytest.mark.parametrize("bad", [None, 1, -1.5, "x", [], {}, [[1, 2]], ["a", 3], [None]])
def test_hand_edited_preprocessors_are_format_errors(tmp_path, bad):
    p = TablePreprocessor(missing="mean").fit(table(40), "segment")
    good = p.to_dict()
    for key in good:
        _saved_with_preprocessor(tmp_path / "m.npz", {**good, key: bad}, p.n_inputs)
        try:
            loaded = fastnn.load(tmp_path / "m.npz")
        except fastnn.ModelFormatError:
            continue
        # Accepted only when the edit changes nothing the preprocessor uses.
        assert loaded.preprocessor.to_dict() == {**good, key: loaded.preprocessor.to_dict()[key]}
        np.testing.assert_array_equal(loaded.preprocessor.transform(table(40)), p.transform(table(40)))
