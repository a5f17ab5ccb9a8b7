"""ONNX export: graphs checked by onnx.checker and run by ONNX Runtime give fastnn's outputs."""
import os
import types
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason='the onnx extra is not installed (pip install ".[onnx]")')
ort = pytest.importorskip("onnxruntime", reason='the onnx extra is not installed (pip install ".[onnx]")')

import fastnn  # noqa: E402
from synthetic import blobs  # noqa: E402
from fastnn.cli import main  # noqa: E402
from fastnn.export_onnx import to_onnx_model  # noqa: E402

ACTIVATIONS = [getattr(fastnn, e.layer) for e in fastnn.activations.REGISTRY]
HEADS = [(fastnn.SoftmaxCrossEntropy, 3), (fastnn.BinaryCrossEntropy, 1),
         (fastnn.BinaryCrossEntropy, 3), (fastnn.MSE, 2)]  # BCE over 3: multi-label
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _net(activation, loss, n_out, dtype, n_in=6, **kwargs):
    layers = [fastnn.Linear(n_in, 16), activation(), fastnn.Dropout(0.3), fastnn.Linear(16, 8),
              activation(), fastnn.Linear(8, n_out)]
    return fastnn.Network(layers, loss=loss(), dtype=dtype, seed=3, **kwargs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss,n_out", HEADS, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda c: c.__name__)
def test_parity_with_onnxruntime(activation, loss, n_out, dtype):
    if activation is fastnn.GELU and dtype == "float64":
        pytest.skip("onnxruntime has no float64 Erf; tests/test_registry.py runs this graph otherwise")
    net = _net(activation, loss, n_out, dtype, input_scale=0.5, input_shift=-0.25)
    X = np.random.default_rng(0).normal(size=(40, 6)).astype(dtype) * 3
    model = to_onnx_model(net)
    outputs = _session(model).run(None, {"input": X})
    expected = net.predict_proba(X)
    got = outputs[-1]
    assert got.dtype == np.dtype(dtype) and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE[dtype])
    if loss is fastnn.MSE:
        assert [o.name for o in model.graph.output] == ["predictions"]
    else:
        assert [o.name for o in model.graph.output] == ["label", "probabilities"]
        np.testing.assert_array_equal(outputs[0], net.predict(X))


def test_layer_orders_the_network_allows():
    # an activation first and two in a row run unfused in fastnn; the graph follows the list
    net = fastnn.Network([fastnn.Tanh(), fastnn.Linear(4, 5), fastnn.ReLU(), fastnn.Sigmoid(),
                          fastnn.Linear(5, 3)], seed=0)
    X = np.random.default_rng(1).normal(size=(9, 4)).astype(np.float32)
    got = _session(to_onnx_model(net)).run(["probabilities"], {"input": X})[0]
    np.testing.assert_allclose(got, net.predict_proba(X), atol=1e-6)


def test_to_onnx_writes_a_checked_file(tmp_path):
    net = _net(fastnn.ReLU, fastnn.SoftmaxCrossEntropy, 3, "float32", input_scale=1 / 255)
    path = tmp_path / "m.onnx"
    assert net.to_onnx(path) == os.fspath(path)
    onnx.checker.check_model(str(path))
    X = np.random.default_rng(2).integers(0, 256, (5, 6)).astype(np.float32)
    label, proba = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": X})
    np.testing.assert_allclose(proba, net.predict_proba(X), atol=1e-6)
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]  # no temporary file left behind
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props == {"fastnn.loss": "SoftmaxCrossEntropy", "fastnn.dtype": "float32"}


def test_to_onnx_into_a_missing_directory_keeps_nothing(tmp_path):
    net = _net(fastnn.ReLU, fastnn.SoftmaxCrossEntropy, 3, "float32")
    with pytest.raises(FileNotFoundError):
        net.to_onnx(tmp_path / "no" / "m.onnx")


def test_missing_onnx_names_the_extra(monkeypatch):
    from fastnn.export_onnx import OnnxMissing
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)  # import onnx now fails
    net = _net(fastnn.ReLU, fastnn.SoftmaxCrossEntropy, 3, "float32")
    with pytest.raises(OnnxMissing, match=r'pip install "\.\[onnx\]"') as info:
        to_onnx_model(net)
    assert isinstance(info.value, ImportError)
    assert "pip install fastnn" not in str(info.value)


def test_cli_without_onnx_says_how_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)
    _net(fastnn.ReLU, fastnn.SoftmaxCrossEntropy, 3, "float32").save(tmp_path / "m.npz")
    assert main(["export", str(tmp_path / "m.npz"), "--output", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastnn: error: ONNX export needs") and 'pip install ".[onnx]"' in err


# -- tabular models ------------------------------------------------------------------------------

def _tabular(missing, classes, dtype="float32"):
    pre = types.SimpleNamespace(
        feature_columns=["age", "city", "income", "pet"],
        numeric_columns=["age", "income"], means=np.array([40.0, 5e4]), scales=np.array([12.0, 2e4]),
        categorical_columns=["city", "pet"], categories=[["Lyon", "Oslo", "Rome"], ["cat", "dog"]],
        missing=missing, task="classification", classes=classes)
    net = _net(fastnn.Tanh, fastnn.SoftmaxCrossEntropy, len(classes or "abc"), dtype, n_in=7)
    net.preprocessor = pre
    return net, pre


def _encode(pre, columns):
    """The model input the preprocessor contract defines, computed with NumPy."""
    num = np.column_stack([np.asarray(columns[c], np.float64) for c in pre.numeric_columns])
    num = np.where(np.isnan(num), pre.means, num)
    blocks = [(num - pre.means) / pre.scales]
    for column, cats in zip(pre.categorical_columns, pre.categories):
        values = np.asarray(columns[column]).reshape(-1)
        blocks.append(np.stack([values == c for c in cats], axis=1).astype(np.float64))
    return np.hstack(blocks)


@pytest.mark.parametrize("classes", [["high", "low", "mid"], None, [3, 5, 7]], ids=["names", "none", "ints"])
def test_tabular_graph_takes_raw_columns(classes):
    net, pre = _tabular("mean", classes)
    columns = {"age": [[25.0], [np.nan], [61.0], [40.0]],
               "income": [[3e4], [7e4], [np.nan], [5e4]],
               "city": [["Oslo"], ["Rome"], ["Paris"], [""]],  # unknown and missing: zero blocks
               "pet": [["dog"], ["cat"], ["dog"], ["cat"]]}
    feeds = {c: np.array(v, dtype=np.float64 if c in pre.numeric_columns else object)
             for c, v in columns.items()}
    model = to_onnx_model(net)
    assert [i.name for i in model.graph.input] == pre.feature_columns
    label, proba = _session(model).run(None, feeds)
    features = _encode(pre, {c: feeds[c][:, 0] for c in feeds}).astype(np.float32)
    assert features[3, 2:5].tolist() == [0, 0, 0] and features[2, 2:5].tolist() == [0, 0, 0]
    np.testing.assert_allclose(proba, net.predict_proba(features), atol=1e-6)
    index = net.predict(features)
    expected = index if classes is None else np.array(classes, dtype=object)[index]
    assert label.tolist() == expected.tolist()


def test_tabular_with_missing_drop_propagates_nan():
    net, pre = _tabular("drop", ["a", "b", "c"])
    feeds = {"age": np.array([[np.nan], [30.0]]), "income": np.array([[1e4], [2e4]]),
             "city": np.array([["Lyon"], ["Oslo"]], dtype=object),
             "pet": np.array([["cat"], ["cat"]], dtype=object)}
    _, proba = _session(to_onnx_model(net)).run(None, feeds)
    assert np.isnan(proba[0]).all() and np.isfinite(proba[1]).all()


def test_tabular_preprocessor_that_does_not_fit_the_network():
    net, pre = _tabular("mean", ["a", "b", "c"])
    pre.categories = [["Lyon", "Oslo"], ["cat", "dog"]]
    with pytest.raises(ValueError, match="preprocessor: its columns encode to 6 features but the network takes 7"):
        to_onnx_model(net)


# -- scikit-learn --------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("names", [False, True], ids=["int-labels", "str-labels"])
def test_sklearn_pipeline_converts(dtype, names):
    pytest.importorskip("sklearn")
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.datasets import load_iris
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fastnn.export_onnx import register_sklearn_converter
    from fastnn.sklearn import MLPClassifier

    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    if names:
        y = np.array(["setosa", "versicolor", "virginica"])[y]
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), max_iter=30,
                                                         solver="sgd", learning_rate_init=0.1,
                                                         random_state=0, dtype=dtype))
    with pytest.warns(Warning):  # not converged in 30 epochs
        pipe.fit(X, y)
    register_sklearn_converter()
    register_sklearn_converter()  # twice is harmless
    model = skl2onnx.to_onnx(pipe, X[:1], options={id(pipe[-1]): {"zipmap": False}})
    onnx.checker.check_model(model)
    label, proba = _session(model).run(None, {"X": X})
    np.testing.assert_allclose(proba, pipe.predict_proba(X), atol=1e-5)
    assert label.tolist() == pipe.predict(X).tolist()
    assert pipe.score(X, y) > 0.8  # a trained model, so the comparison means something
    indices = skl2onnx.to_onnx(pipe, X[:1], options={id(pipe[-1]): {"zipmap": False, "nocl": True}})
    label, _ = _session(indices).run(None, {"X": X})
    assert label.tolist() == np.searchsorted(pipe.classes_, pipe.predict(X)).tolist()


def test_multilabel_network_exports(tmp_path):
    X, y = blobs(300, 6, k=4, seed=5)
    Y = np.column_stack([y == 0, y >= 2, y % 2 == 1]).astype(np.float32)  # rows with 0-2 labels
    net = fastnn.Network([fastnn.Linear(6, 12), fastnn.ReLU(), fastnn.Linear(12, 3)],
                         loss=fastnn.BinaryCrossEntropy(), seed=2)
    net.fit(X, Y, epochs=15, batch_size=32, optimizer=fastnn.Adam(0.01), verbose=0)
    path = net.to_onnx(tmp_path / "m.onnx")
    outputs = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]
               for o in onnx.load(path).graph.output}
    assert outputs == {"label": ["N", 3], "probabilities": ["N", 3]}
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    label, proba = session.run(None, {"input": X})
    assert label.dtype == np.int64 and label.shape == (300, 3)
    np.testing.assert_array_equal(label, net.predict(X))
    np.testing.assert_allclose(proba, net.predict_proba(X), rtol=1e-5, atol=0)
    assert (label == Y).all(axis=1).mean() > 0.8  # trained, so labels of both values are compared


def test_a_loss_without_export_is_refused():
    class Hinge(fastnn.losses.Loss):
        pass

    net = fastnn.Network([fastnn.Linear(3, 1)], loss=Hinge(), seed=0)
    with pytest.raises(TypeError, match="loss: Hinge has no ONNX export"):
        to_onnx_model(net)


def _fitted_estimator(case, dtype):
    """A fitted fastnn.sklearn estimator of ``case`` and its data X (float32)."""
    from fastnn.sklearn import MLPClassifier, MLPRegressor
    X, y = blobs(240, 5, k=3, seed=1)
    X = (X / 3).astype(np.float32)
    options = dict(hidden_layer_sizes=(10,), max_iter=60, learning_rate_init=0.02, random_state=0,
                   dtype=dtype)
    if case == "binary":
        target, est = np.array(["no", "yes"])[(y == 1).astype(int)], MLPClassifier(**options)
    elif case == "bool":
        target, est = y == 1, MLPClassifier(**options)
    elif case == "multiclass":
        target, est = y + 10, MLPClassifier(**options)
    elif case == "multilabel":
        target = np.column_stack([y == 0, y >= 1, y == 2]).astype(np.int64)
        est = MLPClassifier(**options)
    else:
        loss, n_outputs = case.split("-")
        signal = X @ np.linspace(-0.4, 0.4, 5 * 2).reshape(5, 2)
        target = np.exp(signal) if loss == "poisson" else signal
        target = target[:, 0] if n_outputs == "1" else target
        est = MLPRegressor(loss=loss, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged in 60 epochs
        est.fit(X, target)
    return est, X


SKLEARN_CASES = ["binary", "bool", "multiclass", "multilabel", "squared_error-1", "squared_error-2",
                 "poisson-1", "poisson-2"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", SKLEARN_CASES)
def test_every_sklearn_estimator_converts(case, dtype):
    pytest.importorskip("sklearn")
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.base import is_classifier

    from fastnn.export_onnx import register_sklearn_converter

    est, X = _fitted_estimator(case, dtype)
    register_sklearn_converter()
    sample = X[:1].astype(dtype)
    options = {id(est): {"zipmap": False}} if is_classifier(est) else None
    model = skl2onnx.to_onnx(est, sample, options=options)
    onnx.checker.check_model(model)
    outputs = _session(model).run(None, {"X": X.astype(dtype)})
    rtol = {"float32": 1e-5, "float64": 1e-12}[dtype]
    if not is_classifier(est):
        (values,) = outputs
        expected = est.predict(X.astype(dtype)).reshape(len(X), -1)
        assert values.dtype == np.dtype(dtype) and values.shape == expected.shape
        assert values.shape == (len(X), est.n_outputs_)
        # an output near 0 is a difference of larger terms: its rounding is relative to the
        # outputs' scale, not to itself
        atol = rtol * float(np.abs(expected).max())
        np.testing.assert_allclose(values, expected, rtol=rtol, atol=atol)
        # the network alone exports the same head (exp for the Poisson loss)
        (values,) = _session(to_onnx_model(est.network_)).run(None, {"input": X.astype(dtype)})
        np.testing.assert_allclose(values, expected, rtol=rtol, atol=atol)
        return
    label, proba = outputs
    expected = est.predict_proba(X.astype(dtype))
    assert proba.dtype == np.dtype(dtype) and proba.shape == expected.shape
    assert proba.shape == (len(X), 2 if case in ("binary", "bool") else 3)
    np.testing.assert_allclose(proba, expected, rtol=rtol, atol=0)
    predicted = est.predict(X.astype(dtype))
    assert label.shape == predicted.shape
    assert case not in ("multilabel", "bool") or label.dtype == np.int64  # bool: False, True as 0, 1
    assert label.tolist() == predicted.tolist()
    assert len(np.unique(predicted)) >= 2  # both kinds of labels occur, so the rule is tested


def test_regressor_in_a_pipeline_with_float64_input():
    pytest.importorskip("sklearn")
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fastnn.export_onnx import register_sklearn_converter
    from fastnn.sklearn import MLPRegressor

    X, _ = blobs(120, 4, seed=3)
    X = X.astype(np.float64)
    y = np.exp(X[:, :1] / 4).ravel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged
        pipe = make_pipeline(StandardScaler(), MLPRegressor(loss="poisson", hidden_layer_sizes=(8,),
                                                            max_iter=30, random_state=0,
                                                            dtype="float32")).fit(X, y)
    register_sklearn_converter()
    model = skl2onnx.to_onnx(pipe, X[:1])
    (values,) = _session(model).run(None, {"X": X})
    assert values.dtype == np.float64 and values.shape == (120, 1)
    np.testing.assert_allclose(values[:, 0], pipe.predict(X), rtol=1e-5)


# -- command line --------------------------------------------------------------------------------

def test_cli_export(tmp_path, capsys):
    net = _net(fastnn.Sigmoid, fastnn.SoftmaxCrossEntropy, 3, "float32", input_scale=0.1)
    net.save(tmp_path / "m.npz")
    out = tmp_path / "m.onnx"
    assert main(["export", str(tmp_path / "m.npz"), "--format", "onnx", "--output", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    X = np.random.default_rng(4).normal(size=(3, 6)).astype(np.float32)
    _, proba = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": X})
    np.testing.assert_allclose(proba, net.predict_proba(X), atol=1e-6)


@pytest.mark.parametrize("case", ["missing-model", "bad-format", "bad-output-dir", "not-a-model",
                                  "output-is-dir"])
def test_cli_export_errors(tmp_path, capsys, case):
    model = tmp_path / "m.npz"
    _net(fastnn.ReLU, fastnn.MSE, 2, "float32").save(model)
    (tmp_path / "junk.npz").write_bytes(b"not a model")
    argv = {"missing-model": [str(tmp_path / "nope.npz"), "--output", str(tmp_path / "o.onnx")],
            "bad-format": [str(model), "--format", "tflite", "--output", str(tmp_path / "o.onnx")],
            "bad-output-dir": [str(model), "--output", str(tmp_path / "no" / "o.onnx")],
            "not-a-model": [str(tmp_path / "junk.npz"), "--output", str(tmp_path / "o.onnx")],
            "output-is-dir": [str(model), "--output", str(tmp_path)]}[case]
    assert main(["export", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fastnn: error:"), err
    assert not (tmp_path / "o.onnx").exists()


def test_tabular_regression_and_binary_heads():
    net, pre = _tabular("mean", None)
    pre.task, pre.classes = "regression", None
    reg = fastnn.Network([fastnn.Linear(7, 4), fastnn.Tanh(), fastnn.Linear(4, 1)], loss=fastnn.MSE(), seed=0)
    reg.preprocessor = pre
    feeds = {"age": np.array([[30.0], [50.0]]), "income": np.array([[4e4], [6e4]]),
             "city": np.array([["Rome"], ["Lyon"]], dtype=object),
             "pet": np.array([["dog"], ["cat"]], dtype=object)}
    features = _encode(pre, {c: feeds[c][:, 0] for c in feeds}).astype(np.float32)
    model = to_onnx_model(reg)
    assert [o.name for o in model.graph.output] == ["predictions"]
    (values,) = _session(model).run(None, feeds)
    np.testing.assert_allclose(values, reg.predict(features), atol=1e-6)

    binary = fastnn.Network([fastnn.Linear(7, 1)], loss=fastnn.BinaryCrossEntropy(), seed=1)
    pre.task, pre.classes = "classification", ["no", "yes"]
    binary.preprocessor = pre
    label, proba = _session(to_onnx_model(binary)).run(None, feeds)
    np.testing.assert_allclose(proba, binary.predict_proba(features), atol=1e-6)
    assert label.tolist() == [["no", "yes"][i] for i in binary.predict(features)]


@pytest.mark.parametrize("classes", [["high", "low", "mid"], None], ids=["names", "none"])
def test_tabular_mse_classifier_gives_labels(classes):
    net, pre = _tabular("mean", classes)
    net.loss = fastnn.MSE()
    feeds = {"age": np.array([[30.0], [50.0], [70.0]]), "income": np.array([[4e4], [6e4], [1e5]]),
             "city": np.array([["Rome"], ["Lyon"], ["Oslo"]], dtype=object),
             "pet": np.array([["dog"], ["cat"], ["cat"]], dtype=object)}
    model = to_onnx_model(net)
    assert [o.name for o in model.graph.output] == ["label", "predictions"]
    label, values = _session(model).run(None, feeds)
    outputs = net.predict(_encode(pre, {c: feeds[c][:, 0] for c in feeds}).astype(np.float32))
    np.testing.assert_allclose(values, outputs, atol=1e-6)
    index = np.argmax(outputs, axis=1)
    assert label.tolist() == (index if classes is None else np.array(classes)[index]).tolist()


def test_cli_export_of_a_table_mse_classifier_labels_as_predict_does(tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    from synthetic import table
    data, new = tmp_path / "customers.csv", tmp_path / "new.csv"
    pd.DataFrame(table(200)).to_csv(data, index=False)
    rows = pd.DataFrame(table(30, seed=1)).drop(columns=["segment", "spend"])
    rows.to_csv(new, index=False)
    model, out = tmp_path / "seg_mse.npz", tmp_path / "seg_mse.onnx"
    assert main(["train", "--data", str(data), "--target", "segment", "--ignore", "spend",
                 "--loss", "mse", "--epochs", "3", "--hidden", "16", "--save", str(model)]) == 0
    assert main(["predict", str(model), "--data", str(new), "--output", str(tmp_path / "p.csv")]) == 0
    assert main(["export", str(model), "--output", str(out)]) == 0
    feeds = {c: rows[[c]].to_numpy(np.float64 if rows[c].dtype.kind in "if" else object)
             for c in rows.columns}
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    label, values = session.run(["label", "predictions"], feeds)
    assert values.shape == (30, 3)
    assert label.tolist() == pd.read_csv(tmp_path / "p.csv")["prediction"].tolist()


@pytest.mark.parametrize("columns", [["age", "city", "income", "age"], ["age", "city", "income", ""],
                                    ["age", "city", "income", "size"]])
def test_tabular_column_names_are_checked(columns):
    net, pre = _tabular("mean", ["a", "b", "c"])
    pre.feature_columns = columns
    with pytest.raises(ValueError, match="preprocessor"):
        to_onnx_model(net)
