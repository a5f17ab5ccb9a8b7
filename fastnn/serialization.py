"""Model files: an .npz of named arrays plus a JSON header stored as the uint8 array "__header__".

Header keys: format ("fastnn-model"), format_version (2), dtype, input_scale, input_shift,
n_features, n_outputs, loss {type, config}, layers [{type, config, params?}], arrays
{name: {shape, dtype}}, sha256 (over every array, in header order, with its name), optimizer
(null or {type, hyperparameters, steps, state {state name: [array name per parameter] or null}};
files of earlier versions hold {type, config, scalars, arrays {state name.i: array name}}), extra (JSON-able dict; numpy
arrays inside it are stored as arrays "extra.<i>" and referenced as {"__ndarray__": name}).
Version 2 adds input_range (null or the name of the float64 (n_features, 2) array of the
training inputs' range) and preprocessor (null or TablePreprocessor.to_dict()); version 1 files
load with both None. track_input_range (bool, Network.track_input_range) is optional: files
without it load with True.
Only fastnn's own layer, loss and optimizer types can be saved (a file cannot name a subclass
or any other class): save raises TypeError for any other before it writes anything.
Files are written atomically and read with allow_pickle=False; anything wrong with a file raises
ModelFormatError naming it, and nothing is returned half-built. No array is allocated before its
size has been checked against the file's.
"""
import hashlib
import json
import math
import os
import warnings

import numpy as np

from ._atomic import atomic_write
from .errors import ModelFormatError
from .layers import FLOAT_DTYPES, LAYER_TYPES, Linear
from .losses import LOSS_TYPES, BinaryCrossEntropy
from .optim import OPTIMIZER_TYPES, Optimizer, optimizer_from_state

FORMAT = "fastnn-model"
FORMAT_VERSION = 2
_INPUT_RANGE = "input_range"
_ZIP_MAGIC = b"PK\x03\x04"
_ARRAY_REF = "__ndarray__"
_EXTRA_PREFIX = "extra."
# Deflate never expands its input more than this: a member cannot hold more than the file times it.
_MAX_DEFLATE_RATIO = 1032
# The classes a file's "type" entries name, by kind: save records type(obj).__name__ only for
# these exact classes, and load turns the names back into them.
_SAVED_TYPES = {"layer": LAYER_TYPES, "loss": LOSS_TYPES, "optimizer": OPTIMIZER_TYPES}


def _type_name(kind, obj, where):
    """The name a file records for ``obj``'s class; TypeError unless load maps that name back
    to exactly this class (it could not rebuild a subclass or a class of the same name)."""
    cls = type(obj)
    if _SAVED_TYPES[kind].get(cls.__name__) is not cls:
        base = _known_base(kind, cls)
        note = "" if base is None else f" (a subclass of {base.__name__})"
        raise TypeError(f"{where}: {cls.__name__} is not a {kind} type fastnn.load knows{note}; "
                        "save supports fastnn's own layer, loss and optimizer types")
    return cls.__name__


def _known_base(kind, cls):
    """The nearest base class of ``cls`` that files of ``kind`` can name, or None."""
    return next((base for base in cls.__mro__[1:]
                 if _SAVED_TYPES[kind].get(base.__name__) is base), None)


def _saved_class(path, kind, name, where):
    """The class a file's ``type`` entry ``name`` stands for (ModelFormatError if none)."""
    if not isinstance(name, str):
        raise ModelFormatError(path, f"{where}: invalid {kind} type {name!r}")
    if name not in _SAVED_TYPES[kind]:
        raise ModelFormatError(path, f"{where}: the file names {kind} type {name!r}, which this "
                                     "fastnn does not know (the file may have been saved by a "
                                     "newer fastnn or from a subclass)")
    return _SAVED_TYPES[kind][name]


def _digest(names, arrays):
    h = hashlib.sha256()
    for name in names:
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode("utf-8") + b"\0" + a.dtype.str.encode() + str(a.shape).encode() + b"\0")
        h.update(a.data)
    return h.hexdigest()


def save(network, path, include_optimizer=False, optimizer=None, extra=None):
    """Write ``network`` to ``path`` atomically (an existing file survives a failed save).

    include_optimizer or an explicit ``optimizer`` stores that optimizer's state (default: the
    network's last fit optimizer). extra: JSON-able dict (e.g. epoch, RNG state) kept verbatim.
    TypeError if a layer, the loss or the stored optimizer is not one of fastnn's own types, or
    ``network.preprocessor`` is neither None nor a TablePreprocessor; ValueError if the
    preprocessor is not fitted or does not fit the network (its inputs, its outputs: see
    preprocessor_mismatch).
    """
    arrays, layers = {}, []
    for i, layer in enumerate(network.layers):
        entry = {"type": _type_name("layer", layer, f"layers[{i}]"), "config": layer.get_config()}
        if isinstance(layer, Linear):
            entry["params"] = [f"layers.{i}.W", f"layers.{i}.b"]
            arrays[entry["params"][0]], arrays[entry["params"][1]] = layer.W, layer.b
        layers.append(entry)

    loss_header = {"type": _type_name("loss", network.loss, "loss"),
                   "config": network.loss.get_config()}
    opt_header = None
    if include_optimizer or optimizer is not None:
        optimizer = network.optimizer if optimizer is None else optimizer
        if not isinstance(optimizer, Optimizer):
            raise ValueError("include_optimizer=True needs an optimizer: pass optimizer= or fit first")
        opt_type = _type_name("optimizer", optimizer, "optimizer")
        state = optimizer.state_dict()
        opt_header = {"type": opt_type, "hyperparameters": state["hyperparameters"],
                      "steps": state["steps"], "state": {}}
        for name, buffers in state["state"].items():
            names = None if buffers is None else [f"optimizer.{name}.{i}" for i in range(len(buffers))]
            opt_header["state"][name] = names
            for array_name, arr in zip(names or [], buffers or []):
                arrays[array_name] = arr

    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"extra: expected a dict or None, got {type(extra).__name__}")
    extra_arrays = {}
    extra = _arrays_out(extra, extra_arrays, "extra")
    arrays.update(extra_arrays)
    if network.input_range is not None:
        arrays[_INPUT_RANGE] = np.ascontiguousarray(network.input_range, dtype=np.float64)
    preprocessor = network.preprocessor
    if preprocessor is not None:
        from .tabular import TablePreprocessor
        if not isinstance(preprocessor, TablePreprocessor):
            raise TypeError("preprocessor: expected a fastnn.tabular.TablePreprocessor or None, got "
                            f"{type(preprocessor).__name__}")
        if preprocessor.target is None:
            raise ValueError("preprocessor: the TablePreprocessor is not fitted (call fit first)")
        mismatch = preprocessor_mismatch(preprocessor, network)
        if mismatch:
            raise ValueError(f"preprocessor: {mismatch}")
    header = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "dtype": network.dtype.name,
        "input_scale": network.input_scale, "input_shift": network.input_shift,
        "n_features": network.n_features, "n_outputs": network.n_outputs,
        "loss": loss_header,
        "layers": layers,
        "arrays": {k: {"shape": list(a.shape), "dtype": a.dtype.name} for k, a in arrays.items()},
        "sha256": _digest(list(arrays), arrays),
        "optimizer": opt_header,
        "extra": extra,
        "input_range": _INPUT_RANGE if network.input_range is not None else None,
        "preprocessor": None if preprocessor is None else preprocessor.to_dict(),
        "track_input_range": bool(getattr(network, "track_input_range", True)),
    }
    try:
        text = json.dumps(header, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"extra: must be JSON-serialisable without NaN/Inf ({exc})") from None
    members = {"__header__": np.frombuffer(text.encode("utf-8"), np.uint8)}
    members.update(arrays)
    with atomic_write(path) as f:
        np.savez(f, **members)


def _arrays_out(value, arrays, where):
    """``value`` with each ndarray replaced by a reference to a new entry of ``arrays``."""
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject or value.dtype.kind not in "biufc":
            raise TypeError(f"{where}: arrays in extra must be numeric, got dtype {value.dtype}")
        name = f"{_EXTRA_PREFIX}{len(arrays)}"
        arrays[name] = np.ascontiguousarray(value)
        return {_ARRAY_REF: name}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _arrays_out(v, arrays, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_arrays_out(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _arrays_in(path, value, data):
    """Inverse of _arrays_out: references become the arrays read from the file."""
    if isinstance(value, dict):
        if set(value) == {_ARRAY_REF}:
            name = value[_ARRAY_REF]
            if not isinstance(name, str) or not name.startswith(_EXTRA_PREFIX) or name not in data:
                raise ModelFormatError(path, f"extra refers to a missing array {name!r}")
            return data[name]
        return {k: _arrays_in(path, v, data) for k, v in value.items()}
    if isinstance(value, list):
        return [_arrays_in(path, v, data) for v in value]
    return value


def load(path):
    """Read a network saved by ``Network.save``. Its ``optimizer`` attribute holds the saved
    optimizer (or None); ``extra`` the saved extra dict (or None).

    Emits a RuntimeWarning for the checkpoint of an interrupted table regression
    (``interrupted_regression``): its outputs are standardised targets until ``fastnn train
    --resume PATH`` finishes the run. Raises ModelFormatError for anything wrong with the file,
    OSError (FileNotFoundError, IsADirectoryError, ...) when it cannot be read."""
    path = os.fspath(path)
    network = load_checkpoint(path)[0]
    if interrupted_regression(network):
        warnings.warn(f"{path} is the checkpoint of an interrupted regression run: its outputs "
                      "are in standardised units, (value - mean) / std of the training targets, "
                      f"until the run is finished with `fastnn train --resume {path}`",
                      RuntimeWarning, stacklevel=2)
    return network


def interrupted_regression(network):
    """True for the checkpoint of an interrupted table regression (``fastnn train --save``
    cut short): ``network.extra`` has a "checkpoint" entry and ``network.preprocessor`` is a
    regression's. Its output layer is rescaled to the target's units only when training ends,
    so until then it outputs standardised targets."""
    extra, preprocessor = network.extra, network.preprocessor
    return (isinstance(extra, dict) and bool(extra.get("checkpoint"))
            and preprocessor is not None and preprocessor.task == "regression")


def load_checkpoint(path):
    """(network, optimizer or None, extra dict or None) from a model file (what ``load``
    reads, without its warning: the reader of runs to resume)."""
    path = os.fspath(path)
    header, data = _read(path)
    try:
        return _build(path, header, data)
    except ModelFormatError:
        raise
    except Exception as exc:  # whatever a hand-edited header provokes, it is the file's fault
        raise ModelFormatError(path, f"invalid model description ({type(exc).__name__}: {exc})") from exc


def _read(path):
    with open(path, "rb") as f:
        if f.read(4) != _ZIP_MAGIC:
            raise ModelFormatError(path, "not a fastnn model file (not an .npz archive)")
        f.seek(0)
        file_size = os.fstat(f.fileno()).st_size
        try:
            with np.load(f, allow_pickle=False) as z:
                if not hasattr(z, "files") or "__header__" not in z.files:
                    raise ModelFormatError(path, "not a fastnn model file (no __header__ array)")
                raw = _member(path, z, "__header__", file_size)
                if raw.dtype != np.uint8 or raw.ndim != 1:
                    raise ModelFormatError(path, "__header__ is not a uint8 vector")
                header = json.loads(raw.tobytes().decode("utf-8"))
                _check_header(path, header)
                data = {}
                for name, spec in header["arrays"].items():
                    if name not in z.files:
                        raise ModelFormatError(path, f"array {name!r} is missing")
                    data[name] = np.array(_member(path, z, name, file_size), copy=True, order="C")
        except ModelFormatError:
            raise
        except Exception as exc:  # every parse failure of an untrusted file is a format error
            raise ModelFormatError(path, f"damaged or truncated file ({type(exc).__name__}: {exc})") from exc
    for name, spec in header["arrays"].items():
        a = data[name]
        if list(a.shape) != spec["shape"] or a.dtype.name != spec["dtype"]:
            raise ModelFormatError(path, f"array {name!r} is {a.dtype.name}{a.shape}, the header "
                                         f"says {spec['dtype']}{tuple(spec['shape'])}")
    if _digest(list(header["arrays"]), data) != header["sha256"]:
        raise ModelFormatError(path, "checksum mismatch: the arrays do not match their SHA-256 "
                                     "(the file is damaged)")
    return header, data


def _member(path, z, name, file_size):
    """Array ``name`` of the open .npz ``z``, read only once its .npy header promises no more
    bytes than the member holds and the member no more than the file can (a damaged shape must
    not make numpy allocate gigabytes before it finds the data missing)."""
    info = z.zip.getinfo(name + ".npy")
    if info.file_size > _MAX_DEFLATE_RATIO * file_size:
        raise ModelFormatError(path, f"array {name!r} claims {info.file_size} bytes, more than "
                                     f"the {file_size}-byte file can hold")
    with z.zip.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise ModelFormatError(path, f"array {name!r}: unsupported .npy version {version}")
        header_size = member.tell()
    if dtype.hasobject:
        raise ModelFormatError(path, f"array {name!r} holds Python objects")
    if math.prod(shape) * dtype.itemsize != info.file_size - header_size:
        raise ModelFormatError(path, f"array {name!r}: its header promises {dtype}{shape}, "
                                     f"which does not match the {info.file_size - header_size} "
                                     "bytes stored")
    return z[name]


def _check_header(path, h):
    if not isinstance(h, dict) or h.get("format") != FORMAT:
        got = h.get("format") if isinstance(h, dict) else type(h).__name__
        raise ModelFormatError(path, f"not a fastnn model file (format {got!r})")
    v = h.get("format_version")
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ModelFormatError(path, f"invalid format_version {v!r}")
    if v > FORMAT_VERSION:
        raise ModelFormatError(path, f"written by a newer fastnn (format_version {v}; this version "
                                     f"reads up to {FORMAT_VERSION}); upgrade fastnn to load it")
    if h.get("dtype") not in [d.name for d in FLOAT_DTYPES]:
        raise ModelFormatError(path, f"invalid dtype {h.get('dtype')!r}")
    arrays = h.get("arrays")
    if not isinstance(arrays, dict) or not all(
            isinstance(s, dict) and isinstance(s.get("shape"), list) and isinstance(s.get("dtype"), str)
            and all(isinstance(d, int) and d >= 0 for d in s["shape"]) for s in arrays.values()):
        raise ModelFormatError(path, "invalid 'arrays' table in the header")
    if not isinstance(h.get("sha256"), str) or not isinstance(h.get("layers"), list):
        raise ModelFormatError(path, "header lacks sha256 or layers")


def _number(path, h, key):
    v = h.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ModelFormatError(path, f"invalid {key} {v!r}")
    return float(v)


def _build(path, h, data):
    from .network import Network

    dtype = np.dtype(h["dtype"])
    layers = []
    for i, entry in enumerate(h["layers"]):
        config = dict(entry.get("config", {}))
        layer_class = _saved_class(path, "layer", entry["type"], f"layers[{i}]")
        if layer_class is Linear:
            # Linear() draws weights of the configured size: check it against the stored ones
            # first, so a damaged header cannot ask for an arbitrary allocation.
            w_name, b_name = entry["params"]
            W, b = data[w_name], data[b_name]
            if W.ndim != 2 or (config.get("in_features"), config.get("out_features")) != W.shape:
                raise ModelFormatError(path, f"layers[{i}]: config {config} does not match its "
                                             f"weights of shape {W.shape}")
        layer = layer_class(**config)
        if isinstance(layer, Linear):
            want = ((layer.in_features, layer.out_features), (layer.out_features,))
            if (W.shape, b.shape) != want or W.dtype != dtype or b.dtype != dtype:
                raise ModelFormatError(path, f"layers[{i}]: parameters are {W.dtype.name}{W.shape} and "
                                             f"{b.dtype.name}{b.shape}, expected {dtype.name} {want}")
            layer.W, layer.b = W, b
            layer._pending_init = False
        layers.append(layer)
    loss_entry = h["loss"]
    loss = _saved_class(path, "loss", loss_entry.get("type"), "loss")(**loss_entry.get("config", {}))
    net = Network(layers, loss=loss, dtype=dtype.name, input_scale=_number(path, h, "input_scale"),
                  input_shift=_number(path, h, "input_shift"))
    if net.n_features != h.get("n_features") or net.n_outputs != h.get("n_outputs"):
        raise ModelFormatError(path, "n_features/n_outputs disagree with the layers")

    optimizer = None
    if h.get("optimizer") is not None:
        optimizer = _optimizer(path, h["optimizer"], data, net.parameters(), dtype)
    extra = h.get("extra")
    if extra is not None and not isinstance(extra, dict):
        raise ModelFormatError(path, "'extra' is not a dict")
    extra = _arrays_in(path, extra, data)
    net.optimizer = optimizer
    net.extra = extra
    if h.get("input_range") is not None:
        if h["input_range"] != _INPUT_RANGE:
            raise ModelFormatError(path, f"input_range refers to {h['input_range']!r}")
        from ._range import check_range
        net.input_range = check_range(data[_INPUT_RANGE], net.n_features)
    if h.get("preprocessor") is not None:
        net.preprocessor = _preprocessor(path, h["preprocessor"], net)
    track = h.get("track_input_range", True)
    if not isinstance(track, bool):
        raise ModelFormatError(path, f"invalid track_input_range {track!r} (expected true or false)")
    net.track_input_range = track
    return net, optimizer, extra


def _preprocessor(path, description, net):
    from .tabular import TablePreprocessor  # needs neither pandas nor pyarrow
    try:
        preprocessor = TablePreprocessor.from_dict(description)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFormatError(path, f"invalid table preprocessor ({type(exc).__name__}: {exc})") from None
    mismatch = preprocessor_mismatch(preprocessor, net)
    if mismatch:
        raise ModelFormatError(path, mismatch)
    return preprocessor


def preprocessor_mismatch(preprocessor, net):
    """Why the table preprocessor cannot feed and name the outputs of ``net`` (None when it
    can): its inputs must be the network's, a regression has one output, and a classification
    one output per class (or one output for two classes, with binary cross-entropy)."""
    if preprocessor.n_inputs != net.n_features:
        return (f"the table preprocessor makes {preprocessor.n_inputs} inputs; "
                f"the network takes {net.n_features}")
    if preprocessor.task == "regression":
        if net.n_outputs != 1:
            return (f"the table preprocessor is a regression of {preprocessor.target!r} (one output); "
                    f"the network has {net.n_outputs}")
        return None
    classes = len(preprocessor.classes)
    if net.n_outputs != classes and not (net.n_outputs == 1 and classes == 2
                                         and isinstance(net.loss, BinaryCrossEntropy)):
        return (f"the table preprocessor names {classes} classes of {preprocessor.target!r}; the "
                f"network has {net.n_outputs} output(s)")
    return None


def _optimizer(path, o, data, params, dtype):
    """The optimizer of a file's header entry ``o`` (either form, see the module docstring)."""
    if not isinstance(o, dict):
        raise ModelFormatError(path, "invalid 'optimizer' entry in the header")
    _saved_class(path, "optimizer", o.get("type"), "optimizer")  # optimizer_from_state builds it
    if "state" in o:  # {state name: [array name per parameter] or None}
        if not isinstance(o["state"], dict):
            raise ModelFormatError(path, "invalid optimizer 'state' in the header")
        buffers = {}
        for name, names in o["state"].items():
            if names is not None and (not isinstance(names, list) or len(names) != len(params)):
                raise ModelFormatError(path, f"optimizer state {name!r} does not list one buffer "
                                             "per parameter")
            buffers[name] = None if names is None else [data[n] for n in names]
        state = {"type": o.get("type"), "hyperparameters": o.get("hyperparameters", {}),
                 "steps": o.get("steps", 0), "state": buffers}
        listed = [(f"{name}[{i}]", a, i) for name, arrays in buffers.items()
                  for i, a in enumerate(arrays or [])]
    else:
        arrays = {k: data[v] for k, v in o["arrays"].items()}
        state = {"type": o["type"], "config": o["config"], "scalars": o.get("scalars", {}),
                 "arrays": arrays}
        listed = []
        for k, a in arrays.items():
            index = k.rsplit(".", 1)[-1]
            listed.append((k, a, int(index) if index.isdigit() else -1))
    for k, a, idx in listed:
        if not 0 <= idx < len(params) or a.shape != params[idx].shape or a.dtype != dtype:
            raise ModelFormatError(path, f"optimizer buffer {k!r} ({a.dtype.name}{a.shape}) does "
                                         "not fit the parameters")
    return optimizer_from_state(state)

