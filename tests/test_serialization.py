"""save/load: round trips, optimizer state, and every kind of bad file -> ModelFormatError."""
import json
import os
import warnings

import numpy as np
import pytest

from fastnn.errors import ModelFormatError
from fastnn.layers import Dropout, Linear, ReLU, ScaledTanh, Sigmoid, Tanh
from fastnn.losses import MSE, BinaryCrossEntropy, SoftmaxCrossEntropy
from fastnn.network import Network
from fastnn.optim import SGD, Adam
from fastnn.serialization import _digest, interrupted_regression, load, load_checkpoint


def data(n=120, f=8, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, f)).astype(np.float32), rng.integers(0, k, n)


@pytest.fixture
def trained():
    X, y = data()
    net = Network([Linear(8, 6), Sigmoid(), Dropout(0.1), Linear(6, 3)], seed=0)
    net.fit(X, y, epochs=2, batch_size=16, progress=False, optimizer=SGD(lr=0.1, momentum=0.9))
    return net


@pytest.fixture
def saved(trained, tmp_path):
    path = tmp_path / "model.npz"
    trained.save(path)
    return path


def members(path):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads(arrays.pop("__header__").tobytes()), arrays


def write(path, header, arrays, rehash=True):
    if rehash:
        header["sha256"] = _digest([n for n in header["arrays"] if n in arrays], arrays)
    with open(path, "wb") as f:
        np.savez(f, __header__=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)


# -- round trips ------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: Network([Linear(8, 6), Sigmoid(), Dropout(0.1), Linear(6, 3)], seed=0),
    lambda: Network([Tanh(), Linear(8, 5, init="xavier"), ReLU(), ScaledTanh(), Linear(5, 3)],
                    dtype="float64", input_scale=0.5, input_shift=-1.0, seed=1),
    lambda: Network([Linear(8, 4), Tanh(), Linear(4, 1)], loss=BinaryCrossEntropy(), seed=2),
    lambda: Network([Linear(8, 3)], loss=MSE(), seed=3),
], ids=["mlp", "float64-unfused-scaled", "bce", "mse"])
def test_round_trip_identical_predictions(make, tmp_path):
    X, _ = data()
    net = make()
    path = tmp_path / "m.npz"
    net.save(path)
    again = load(path)
    assert repr(again) == repr(net)
    assert again.dtype == net.dtype
    for a, b in zip(again.parameters(), net.parameters()):
        assert a.dtype == b.dtype and a.flags.writeable and a.flags.c_contiguous
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(again.forward(X), net.forward(X))
    np.testing.assert_array_equal(again.predict(X), net.predict(X))
    assert again.optimizer is None and again.extra is None


def test_save_keeps_the_exact_path_and_overwrites(trained, tmp_path):
    path = tmp_path / "model.bin"
    trained.save(str(path))
    trained.save(path)
    assert sorted(os.listdir(tmp_path)) == ["model.bin"]
    assert load(path).n_parameters() == trained.n_parameters()


@pytest.mark.parametrize("make_opt", [lambda: SGD(lr=0.05, momentum=0.9, nesterov=True),
                                      lambda: Adam(lr=0.01)], ids=["sgd", "adam"])
def test_optimizer_state_and_extra_resume_training_exactly(make_opt, tmp_path):
    X, y = data()
    straight = Network([Linear(8, 6), ReLU(), Linear(6, 3)], seed=5)
    opt = make_opt()
    straight.fit(X, y, epochs=2, batch_size=20, optimizer=opt, shuffle=False, progress=False)
    halfway = Network([Linear(8, 6), ReLU(), Linear(6, 3)], seed=5)
    halfway.fit(X, y, epochs=1, batch_size=20, optimizer=make_opt(), shuffle=False, progress=False)
    path = tmp_path / "ckpt.npz"
    halfway.save(path, include_optimizer=True, extra={"epoch": 1, "rng": {"state": 2 ** 70}})
    net, opt2, extra = load_checkpoint(path)
    assert extra == {"epoch": 1, "rng": {"state": 2 ** 70}}
    assert net.optimizer is opt2 and type(opt2) is type(opt)
    net.fit(X, y, epochs=1, batch_size=20, optimizer=opt2, shuffle=False, progress=False)
    for a, b in zip(net.parameters(), straight.parameters()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make_opt", [lambda: SGD(lr=0.05, momentum=0.9, nesterov=True),
                                      lambda: Adam(lr=0.01)], ids=["sgd", "adam"])
def test_fit_after_load_continues_with_the_loaded_optimizer(make_opt, tmp_path):
    X, y = data()
    straight = Network([Linear(8, 6), ReLU(), Linear(6, 3)], seed=5)
    straight.fit(X, y, epochs=2, batch_size=20, optimizer=make_opt(), shuffle=False, progress=False)
    halfway = Network([Linear(8, 6), ReLU(), Linear(6, 3)], seed=5)
    halfway.fit(X, y, epochs=1, batch_size=20, optimizer=make_opt(), shuffle=False, progress=False)
    path = tmp_path / "ckpt.npz"
    halfway.save(path, include_optimizer=True)
    net = load(path)
    loaded = net.optimizer
    assert loaded.steps == 6
    net.fit(X, y, epochs=1, batch_size=20, shuffle=False, progress=False)  # no optimizer given
    assert net.optimizer is loaded and loaded.steps == 12 and loaded.lr == make_opt().lr
    for a, b in zip(net.parameters(), straight.parameters()):
        np.testing.assert_array_equal(a, b)


def test_include_optimizer_needs_one(tmp_path):
    net = Network([Linear(3, 2)])
    with pytest.raises(ValueError, match="optimizer"):
        net.save(tmp_path / "x.npz", include_optimizer=True)
    with pytest.raises(ValueError, match="extra"):
        net.save(tmp_path / "x.npz", extra={"bad": float("nan")})
    assert not os.listdir(tmp_path)


# -- only fastnn's own types are saved --------------------------------------------------------

class MyLinear(Linear):
    pass


class MyReLU(ReLU):
    pass


class MyDropout(Dropout):
    pass


class MySCE(SoftmaxCrossEntropy):
    pass


class MySGD(SGD):
    pass


SubclassNamedMSE = type("MSE", (MSE,), {})


@pytest.mark.parametrize("layers, loss, optimizer, named", [
    ([Linear(8, 6), MyReLU(), Linear(6, 3)], None, None, r"layers\[1\]: MyReLU .*subclass of ReLU"),
    ([MyLinear(8, 3)], None, None, r"layers\[0\]: MyLinear .*subclass of Linear"),
    ([Linear(8, 6), MyDropout(0.1), Linear(6, 3)], None, None,
     r"layers\[1\]: MyDropout .*subclass of Dropout"),
    ([Linear(8, 3)], MySCE(), None, r"loss: MySCE .*subclass of SoftmaxCrossEntropy"),
    ([Linear(8, 1)], SubclassNamedMSE(), None, r"loss: MSE .*subclass of MSE"),
    ([Linear(8, 3)], None, MySGD(lr=0.1, momentum=0.9), r"optimizer: MySGD .*subclass of SGD"),
], ids=["relu", "linear", "dropout", "loss", "loss-with-builtin-name", "optimizer"])
def test_save_refuses_what_load_cannot_rebuild_and_writes_nothing(layers, loss, optimizer, named,
                                                                  tmp_path):
    X, y = data()
    net = Network(layers, seed=0) if loss is None else Network(layers, loss=loss, seed=0)
    targets = X[:, :1] if isinstance(loss, MSE) else y
    net.fit(X, targets, epochs=1, batch_size=16, progress=False, optimizer=optimizer or SGD())
    path = tmp_path / "model.npz"
    with pytest.raises(TypeError, match=named):
        net.save(path, include_optimizer=optimizer is not None)
    assert not os.listdir(tmp_path)  # neither the file nor a temporary one

    path.write_bytes(b"an earlier model")
    with pytest.raises(TypeError, match=named):
        net.save(path, include_optimizer=optimizer is not None)
    assert path.read_bytes() == b"an earlier model"
    assert os.listdir(tmp_path) == [path.name]


def test_subclass_optimizer_is_saved_only_when_asked_for(tmp_path):
    X, y = data()
    net = Network([Linear(8, 3)], seed=0)
    net.fit(X, y, epochs=1, batch_size=16, progress=False, optimizer=MySGD(lr=0.1))
    net.save(tmp_path / "weights.npz")
    assert load(tmp_path / "weights.npz").optimizer is None
    with pytest.raises(TypeError, match="optimizer: MySGD"):
        net.save(tmp_path / "ckpt.npz", optimizer=MySGD(lr=0.1))
    assert os.listdir(tmp_path) == ["weights.npz"]


# -- atomic save ------------------------------------------------------------------------------

def test_failed_save_keeps_previous_file(trained, saved, monkeypatch):
    before = saved.read_bytes()

    def broken_savez(file, **arrays):
        file.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    trained.layers[0].W += 1.0
    with pytest.raises(OSError, match="disk full"):
        trained.save(saved)
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == [saved.name]  # no temporary file left behind


# -- bad files --------------------------------------------------------------------------------

def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope.npz")


def test_truncated_file(saved):
    raw = saved.read_bytes()
    for size in (0, 3, 100, len(raw) // 2, len(raw) - 1):
        saved.write_bytes(raw[:size])
        with pytest.raises(ModelFormatError, match=str(saved)):
            load(saved)


def test_flipped_bytes(saved):
    original = load(saved)
    raw = bytearray(saved.read_bytes())
    positions = range(0, len(raw), max(1, len(raw) // 97))
    detected = 0
    for pos in positions:
        damaged = raw.copy()
        damaged[pos] ^= 0x10
        saved.write_bytes(bytes(damaged))
        try:
            net = load(saved)
        except ModelFormatError as exc:
            assert str(saved) in str(exc)
            detected += 1
        else:
            # A flip in zip metadata that is never read (e.g. a timestamp) may leave the model
            # intact; then it must load exactly as saved.
            for a, b in zip(net.parameters(), original.parameters()):
                np.testing.assert_array_equal(a, b)
            assert repr(net) == repr(original)
    assert detected >= 0.8 * len(positions)


def test_flipped_parameter_byte_is_a_checksum_error(saved):
    header, arrays = members(saved)
    arrays["layers.0.W"] = arrays["layers.0.W"].copy()
    arrays["layers.0.W"].view(np.uint8)[5] ^= 1
    write(saved, header, arrays, rehash=False)
    with pytest.raises(ModelFormatError, match="checksum mismatch"):
        load(saved)


@pytest.mark.parametrize("content", [b"hello world", b"", b"\x93NUMPY\x01\x00v\x00"])
def test_foreign_files(tmp_path, content):
    path = tmp_path / "foreign.npz"
    path.write_bytes(content)
    with pytest.raises(ModelFormatError, match="not a fastnn model"):
        load(path)


def test_foreign_npz_and_npy(tmp_path):
    npz = tmp_path / "other.npz"
    np.savez(npz, a=np.arange(3))
    with pytest.raises(ModelFormatError, match="no __header__"):
        load(npz)
    npy = tmp_path / "other.npy"
    np.save(npy, np.arange(3))
    with pytest.raises(ModelFormatError, match="not a fastnn model"):
        load(npy)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, __header__=np.array([{"format": "fastnn-model"}], dtype=object))
    with pytest.raises(ModelFormatError, match=str(pickled)):
        load(pickled)


def edit_header(key, value):
    def edit(header, arrays):
        header[key] = value
    return edit


def drop_array(header, arrays):
    del arrays["layers.3.b"]


def reshape_W(header, arrays):
    arrays["layers.0.W"] = arrays["layers.0.W"][:, :5].copy()
    header["arrays"]["layers.0.W"]["shape"] = [8, 5]


def retype_arrays(header, arrays):
    for name in arrays:
        arrays[name] = arrays[name].astype(np.float16)
        header["arrays"][name]["dtype"] = "float16"


def float64_arrays_in_float32_model(header, arrays):
    for name in arrays:
        arrays[name] = arrays[name].astype(np.float64)
        header["arrays"][name]["dtype"] = "float64"


def header_disagrees_with_array(header, arrays):
    header["arrays"]["layers.0.b"]["shape"] = [7]


def bad_layer(header, arrays):
    header["layers"][1]["type"] = "Softplus"


def bad_dropout(header, arrays):
    header["layers"][2]["config"]["p"] = 2.0


@pytest.mark.parametrize("edit, match", [
    (edit_header("format_version", 3), "newer fastnn.*format_version 3"),
    (edit_header("format_version", "1"), "format_version"),
    (edit_header("format", "keras"), "not a fastnn model"),
    (edit_header("dtype", "float16"), "dtype"),
    (edit_header("input_scale", None), "input_scale"),
    (edit_header("loss", {"type": "Hinge", "config": {}}), "Hinge"),
    (drop_array, "layers.3.b.*missing"),
    (reshape_W, r"layers\[0\]"),
    (retype_arrays, "float16"),
    (float64_arrays_in_float32_model, "float64"),
    (header_disagrees_with_array, "the header says"),
    (bad_layer, "Softplus"),
    (bad_dropout, "p"),
], ids=["newer-version", "version-type", "format", "dtype", "input-scale", "loss", "missing-array",
        "wrong-shape", "float16", "wrong-dtype", "header-vs-array", "layer-type", "layer-config"])
def test_bad_contents(saved, edit, match):
    header, arrays = members(saved)
    edit(header, arrays)
    write(saved, header, arrays)
    with pytest.raises(ModelFormatError, match=match) as info:
        load(saved)
    assert str(saved) in str(info.value)


def rename_layer(header, arrays):
    header["layers"][0]["type"] = "MyLinear"


def rename_loss(header, arrays):
    header["loss"]["type"] = "MySCE"


def rename_optimizer(header, arrays):
    header["optimizer"]["type"] = "MySGD"


@pytest.mark.parametrize("edit, where", [
    (rename_layer, r"layers\[0\]: .*layer type 'MyLinear'"),
    (rename_loss, "loss: .*loss type 'MySCE'"),
    (rename_optimizer, "optimizer: .*optimizer type 'MySGD'"),
], ids=["layer", "loss", "optimizer"])
def test_unknown_type_name_says_this_fastnn_does_not_know_it(trained, tmp_path, edit, where):
    path = tmp_path / "ckpt.npz"
    trained.save(path, include_optimizer=True)
    header, arrays = members(path)
    edit(header, arrays)
    write(path, header, arrays)
    with pytest.raises(ModelFormatError, match=where + ".*this fastnn does not know") as info:
        load(path)
    assert "invalid model description" not in str(info.value)
    assert str(path) in str(info.value)


def test_optimizer_buffers_must_fit(trained, tmp_path):
    path = tmp_path / "ckpt.npz"
    trained.save(path, include_optimizer=True)
    header, arrays = members(path)
    assert header["optimizer"]["type"] == "SGD"
    arrays["optimizer.momentum_buffer.0"] = arrays["optimizer.momentum_buffer.0"][:2].copy()
    header["arrays"]["optimizer.momentum_buffer.0"]["shape"] = list(arrays["optimizer.momentum_buffer.0"].shape)
    write(path, header, arrays)
    with pytest.raises(ModelFormatError, match="optimizer buffer"):
        load(path)


# -- a table preprocessor must fit its network ---------------------------------------------------

def _table(n=40, classes=("a", "b", "c")):
    rng = np.random.default_rng(1)
    return {"x1": rng.standard_normal(n), "x2": rng.standard_normal(n),
            "label": np.array([classes[i % len(classes)] for i in range(n)], dtype=object),
            "price": rng.standard_normal(n)}


def _with_preprocessor(outputs, loss=None, classes=("a", "b", "c"), target="label", inputs=0):
    from fastnn.tabular import TablePreprocessor
    table = _table(classes=classes)
    ignored = ["price"] if target == "label" else ["label"]
    p = TablePreprocessor().fit(table, target, ignore=ignored)
    net = Network([Linear(p.n_inputs + inputs, outputs)], loss=loss, seed=0)
    net.preprocessor = p
    return net


@pytest.mark.parametrize("net, message", [
    (lambda: _with_preprocessor(3, inputs=1), "makes 2 inputs; the network takes 3"),
    (lambda: _with_preprocessor(4), "names 3 classes of 'label'; the network has 4 output"),
    (lambda: _with_preprocessor(2), "names 3 classes of 'label'; the network has 2 output"),
    (lambda: _with_preprocessor(1, loss=BinaryCrossEntropy(), classes=("a", "b", "c")), "names 3 classes"),
    (lambda: _with_preprocessor(1, loss=MSE(), classes=("a", "b")), "names 2 classes of 'label'; the network has 1"),
    (lambda: _with_preprocessor(3, loss=MSE(), target="price"), "regression of 'price' \\(one output\\)"),
], ids=["inputs", "more outputs", "fewer outputs", "bce of three", "mse on one output", "regression"])
def test_save_refuses_a_preprocessor_that_does_not_fit(tmp_path, net, message):
    path = tmp_path / "m.npz"
    path.write_bytes(b"kept")
    with pytest.raises(ValueError, match="^preprocessor: the table preprocessor .*" + message):
        net().save(path)
    assert path.read_bytes() == b"kept"


def test_save_takes_the_preprocessors_that_fit(tmp_path):
    for net in (_with_preprocessor(3), _with_preprocessor(1, loss=BinaryCrossEntropy(), classes=("a", "b")),
                _with_preprocessor(2, classes=("a", "b")), _with_preprocessor(1, loss=MSE(), target="price")):
        net.save(tmp_path / "m.npz")
        assert load(tmp_path / "m.npz").preprocessor.to_dict() == net.preprocessor.to_dict()


def test_save_refuses_what_is_not_a_fitted_preprocessor(tmp_path):
    from fastnn.tabular import TablePreprocessor
    net = Network([Linear(2, 3)], seed=0)
    net.preprocessor = "hello"
    with pytest.raises(TypeError, match="preprocessor: expected a fastnn.tabular.TablePreprocessor or None, got str"):
        net.save(tmp_path / "m.npz")
    net.preprocessor = TablePreprocessor()
    with pytest.raises(ValueError, match="preprocessor: the TablePreprocessor is not fitted"):
        net.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("edit, message", [
    (lambda p: p.update(classes=p["classes"] + ["d"]), "names 4 classes of 'label'; the network has 3"),
    (lambda p: p.update(classes=p["classes"][:2]), "names 2 classes of 'label'; the network has 3"),
    (lambda p: p.update(task="regression", classes=None), "regression of 'label' \\(one output\\)"),
], ids=["a class more", "a class less", "task"])
def test_load_refuses_an_edited_preprocessor_that_does_not_fit(tmp_path, edit, message):
    path = tmp_path / "m.npz"
    _with_preprocessor(3).save(path)
    header, arrays = members(path)
    edit(header["preprocessor"])
    write(path, header, arrays)
    with pytest.raises(ModelFormatError, match=message):
        load(path)


# -- the checkpoint of an interrupted table regression -------------------------------------------

CHECKPOINT = {"checkpoint": {"format": "fastnn-train-checkpoint", "version": 1}}


@pytest.mark.parametrize("extra", [CHECKPOINT, {"checkpoint": {"format": "mine"}}],
                         ids=["cli-checkpoint", "any-checkpoint-entry"])
def test_loading_an_interrupted_regression_warns_that_its_outputs_are_standardised(tmp_path, extra):
    path = tmp_path / "ckpt.npz"
    _with_preprocessor(1, loss=MSE(), target="price").save(path, extra=extra)
    with pytest.warns(RuntimeWarning) as record:
        net = load(path)
    assert len(record) == 1 and record[0].filename == __file__
    message = str(record[0].message)
    for part in (f"{path} is the checkpoint of an interrupted regression run",
                 "standardised units, (value - mean) / std of the training targets",
                 f"fastnn train --resume {path}"):
        assert part in message
    assert interrupted_regression(net)
    net, _, _ = load_checkpoint(path)  # the reader of runs to resume says nothing
    assert interrupted_regression(net)


@pytest.mark.parametrize("net, extra", [
    (lambda: _with_preprocessor(1, loss=MSE(), target="price"), None),
    (lambda: _with_preprocessor(1, loss=MSE(), target="price"), {"epoch": 3}),
    (lambda: _with_preprocessor(3), CHECKPOINT),
    (lambda: Network([Linear(2, 1)], loss=MSE(), seed=0), CHECKPOINT),
], ids=["finished-regression", "other-extra", "classification-checkpoint", "no-preprocessor"])
def test_loading_anything_else_does_not_warn(tmp_path, net, extra):
    path = tmp_path / "m.npz"
    net().save(path, extra=extra)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not interrupted_regression(load(path))


# -- track_input_range --------------------------------------------------------------------------

@pytest.mark.parametrize("track", [False, True])
def test_track_input_range_is_saved(tmp_path, track):
    X, y = data()
    net = Network([Linear(8, 3)], seed=0)
    net.track_input_range = track
    net.fit(X, y, epochs=1, progress=False)
    path = tmp_path / "m.npz"
    net.save(path)
    again = load(path)
    assert again.track_input_range is track
    assert (again.input_range is None) is (not track)


def test_a_file_without_track_input_range_loads_with_it_on(tmp_path):
    path = tmp_path / "m.npz"
    net = Network([Linear(8, 3)], seed=0)
    net.track_input_range = False
    net.save(path)
    header, arrays = members(path)
    del header["track_input_range"]  # as files written before it was saved
    write(path, header, arrays)
    assert load(path).track_input_range is True


def test_track_input_range_must_be_a_bool(saved):
    header, arrays = members(saved)
    header["track_input_range"] = "no"
    write(saved, header, arrays)
    with pytest.raises(ModelFormatError, match="invalid track_input_range 'no'"):
        load(saved)
