"""ONNX export: a Network (or a fastnn.sklearn estimator) as an ONNX graph.

The graph computes what ``predict`` / ``predict_proba`` compute: the input scaling
(``x * input_scale + input_shift``), each Linear as a Gemm, the activations (the nodes of their
entry in :mod:`fastnn.activations`: scaled tanh as ``1.7159 * Tanh(x * 2/3)``, LeakyReLU as
LeakyRelu, GELU as ``0.5 x (1 + Erf(x / sqrt 2))``), no Dropout (inference), then the loss's head:

===========================  =================================================================
loss                         outputs
===========================  =================================================================
SoftmaxCrossEntropy          ``label`` (N,) int64 argmax, ``probabilities`` (N, K) softmax
BinaryCrossEntropy, K = 1    ``label`` (N,) int64 (logit > 0), ``probabilities`` (N,) P(1)
BinaryCrossEntropy, K > 1    ``label`` (N, K) int64 (logit > 0), ``probabilities`` (N, K)
MSE                          ``predictions`` (N, n_outputs)
Poisson (MLPRegressor's)     ``predictions`` (N, n_outputs) = exp(outputs)
===========================  =================================================================

Any other loss raises TypeError.

A network with a ``preprocessor`` (a tabular model) takes one input per raw column instead: a
(N, 1) double tensor per numeric column, standardised with the stored means and scales (a NaN
becomes the mean with ``missing="mean"``), and a (N, 1) string tensor per text column, one-hot
encoded by ONNX-ML's OneHotEncoder (an unknown or missing category gives an all-zero block).
Its ``label`` output holds the class names when the preprocessor has them (one label per row);
a tabular classifier trained with MSE gives ``label``, the class of its largest output (as
``fastnn predict`` gives it), besides ``predictions``.

The scikit-learn converters (``register_sklearn_converter``) give skl2onnx's outputs for
MLPClassifier (``label`` (N,) from classes_ and ``probabilities`` (N, n_classes), two columns
for two classes; ``label`` (N, K) int64 and ``probabilities`` (N, K) when multi-label) and for
MLPRegressor (``variable`` (N, n_outputs), exp of the outputs with loss="poisson").

onnx (and onnxruntime, skl2onnx for the scikit-learn converters) are the optional extra
``pip install ".[onnx]"``; they are imported only when an export runs.
"""
import os

import numpy as np

from ._atomic import atomic_write
from .errors import MissingExtra

OPSET = 17
ML_OPSET = 3
SKLEARN_ALIAS = "FastnnMLPClassifier"
SKLEARN_REGRESSOR_ALIAS = "FastnnMLPRegressor"


class OnnxMissing(MissingExtra):
    """onnx (or skl2onnx) cannot be imported; the message says how to install the extra."""

    def __init__(self, module):
        super().__init__(f"ONNX export needs {module}", "onnx")


def _require(module):
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise OnnxMissing(module) from exc


class _Builder:
    """Nodes and initializers of a standalone graph, with unique names."""

    def __init__(self):
        self.onnx = _require("onnx")
        self.nodes, self.initializers, self._used = [], [], set()

    def name(self, hint):
        name, i = hint, 1
        while name in self._used:
            name, i = f"{hint}_{i}", i + 1
        self._used.add(name)
        return name

    def const(self, hint, array):
        name = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op, inputs, hint, domain="", out=None, **attrs):
        out = out or self.name(hint)
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [out], name=self.name(op),
                                                     domain=domain, **attrs))
        return out


class _SklearnBuilder:
    """The same interface as _Builder over skl2onnx's scope and container."""

    def __init__(self, scope, container):
        self.scope, self.container = scope, container
        self.onnx = _require("onnx")

    def name(self, hint):
        return self.scope.get_unique_variable_name(hint)

    def const(self, hint, array):
        array = np.asarray(array)
        name = self.name(hint)
        tensor = self.onnx.numpy_helper.from_array(array, name)
        self.container.initializers.append(tensor)
        return name

    def node(self, op, inputs, hint, domain="", **attrs):
        out = self.name(hint)
        # The opset each node needs at least (Softmax's axis and Squeeze's axes input: 13).
        op_version = 1 if domain == "ai.onnx.ml" else 13
        self.container.add_node(op, list(inputs), [out], op_domain=domain,
                                op_version=op_version, name=self.scope.get_unique_operator_name(op),
                                **attrs)
        return out


# -- the network ---------------------------------------------------------------------------------

def _activation(g, layer, x, dtype):
    """The nodes of an activation layer, from its registry entry."""
    if layer.entry.onnx is None:
        raise ValueError(f"activation {layer.name!r} has no ONNX export")
    return layer.entry.onnx(g, x, layer.param, dtype)


def _network_body(g, net, x):
    """Nodes from the network's input x (N, n_features) in its dtype to its outputs (N, n_outputs)."""
    from .layers import Activation, Dropout, Linear
    dtype = net.dtype
    if net.input_scale != 1.0:
        x = g.node("Mul", [x, g.const("input_scale", np.array(net.input_scale, dtype))], "scaled")
    if net.input_shift != 0.0:
        x = g.node("Add", [x, g.const("input_shift", np.array(net.input_shift, dtype))], "shifted")
    for i, layer in enumerate(net.layers):
        if isinstance(layer, Linear):
            x = g.node("Gemm", [x, g.const(f"W{i}", layer.W), g.const(f"b{i}", layer.b)], f"linear{i}")
        elif isinstance(layer, Activation):
            x = _activation(g, layer, x, dtype)
        elif not isinstance(layer, Dropout):  # Dropout is the identity at inference
            raise TypeError(f"layers[{i}]: {type(layer).__name__} has no ONNX export")
    return x


def _head(g, net, outputs):
    """(label index int64 or None, probabilities or values) from the network's outputs: the
    index is (N,), or the (N, K) 0/1 matrix for BinaryCrossEntropy over K > 1 outputs."""
    from .losses import MSE, BinaryCrossEntropy, SoftmaxCrossEntropy
    if isinstance(net.loss, SoftmaxCrossEntropy):
        proba = g.node("Softmax", [outputs], "softmax", axis=1)
        return g.node("ArgMax", [outputs], "label_index", axis=1, keepdims=0), proba
    if isinstance(net.loss, BinaryCrossEntropy):
        logit = outputs
        if net.n_outputs == 1:
            logit = g.node("Squeeze", [outputs, g.const("axis1", np.array([1], np.int64))], "logit")
        positive = g.node("Greater", [logit, g.const("zero", np.array(0, net.dtype))], "positive")
        index = g.node("Cast", [positive], "label_index", to=g.onnx.TensorProto.INT64)
        return index, _sigmoid(g, logit, net.dtype)
    if isinstance(net.loss, MSE):
        return None, outputs
    if isinstance(net.loss, _poisson_loss()):
        return None, g.node("Exp", [outputs], "exp")
    raise TypeError(f"loss: {type(net.loss).__name__} has no ONNX export")


def _sigmoid(g, x, dtype):
    """1 / (1 + exp(-x)): within 2e-7 of the exact value relatively (float32), where ONNX
    Runtime's float32 Sigmoid is only close in absolute terms (several times off below 1e-5)."""
    e = g.node("Exp", [g.node("Neg", [x], "negated")], "exp")
    denominator = g.node("Add", [e, g.const("one", np.array(1, dtype))], "denominator")
    return g.node("Reciprocal", [denominator], "sigmoid")


def _poisson_loss():
    """fastnn.sklearn's PoissonDeviance class when that module is loaded (it must be for a
    network to have that loss), else a tuple that matches nothing; importing it would import
    scikit-learn."""
    import sys
    module = sys.modules.get("fastnn.sklearn._outputs")
    return getattr(module, "PoissonDeviance", ())


def _class_names(g, index, classes):
    """(name, ONNX element type) of the names of ``classes`` gathered at ``index``: int64 when
    every name is an integer (as 3 or 3.0) or a bool (False and True as 0 and 1, the type
    skl2onnx declares for them), else strings."""
    values = list(classes)
    if all(isinstance(c, (int, float, np.integer, np.floating, np.bool_))
           and float(c).is_integer() for c in values):
        table, kind = np.array(values).astype(np.int64), g.onnx.TensorProto.INT64
    else:
        table, kind = np.array([str(c) for c in values], dtype=object), g.onnx.TensorProto.STRING
    return g.node("Gather", [g.const("classes", table), index], "class_name", axis=0), kind


# -- tabular preprocessing -----------------------------------------------------------------------

def _check_preprocessor(pre, net):
    columns = list(pre.feature_columns)
    numeric, categorical = list(pre.numeric_columns), list(pre.categorical_columns)
    if not all(isinstance(c, str) and c for c in columns) or len(set(columns)) != len(columns):
        raise ValueError(f"preprocessor.feature_columns: expected distinct non-empty names (the "
                         f"graph's input names), got {columns!r}")
    if sorted(columns) != sorted(numeric + categorical):
        raise ValueError("preprocessor: feature_columns must be the numeric_columns and the "
                         f"categorical_columns, got {columns!r} against {numeric + categorical!r}")
    categories = [list(c) for c in pre.categories]
    means = np.asarray(pre.means, np.float64).reshape(-1)
    scales = np.asarray(pre.scales, np.float64).reshape(-1)
    if len(means) != len(numeric) or len(scales) != len(numeric):
        raise ValueError(f"preprocessor: {len(numeric)} numeric columns but {len(means)} means "
                         f"and {len(scales)} scales")
    if len(categories) != len(categorical):
        raise ValueError(f"preprocessor: {len(categorical)} categorical columns but "
                         f"{len(categories)} category lists")
    width = len(numeric) + sum(len(c) for c in categories)
    if width != net.n_features:
        raise ValueError(f"preprocessor: its columns encode to {width} features but the network "
                         f"takes {net.n_features}")
    if pre.missing not in ("drop", "mean"):
        raise ValueError(f"preprocessor.missing: expected 'drop' or 'mean', got {pre.missing!r}")
    return numeric, categorical, categories, means, scales


def _preprocessing(g, pre, net, inputs):
    """The model input (N, n_features) in the network dtype from the raw column inputs."""
    numeric, categorical, categories, means, scales = _check_preprocessor(pre, net)
    blocks = []
    if numeric:
        x = g.node("Concat", [inputs[c] for c in numeric], "numeric", axis=1)
        mean = g.const("means", means.reshape(1, -1))
        if pre.missing == "mean":  # a missing value becomes the mean
            x = g.node("Where", [g.node("IsNaN", [x], "missing"), mean, x], "imputed")
        x = g.node("Sub", [x, mean], "centered")
        x = g.node("Div", [x, g.const("scales", scales.reshape(1, -1))], "standardized")
        blocks.append(g.node("Cast", [x], "numeric_block", to=_onnx_type(g, net.dtype)))
    for column, cats in zip(categorical, categories):
        hot = g.node("OneHotEncoder", [inputs[column]], f"{column}_onehot", domain="ai.onnx.ml",
                     cats_strings=[str(c) for c in cats], zeros=1)
        flat = g.node("Reshape", [hot, g.const("shape", np.array([-1, len(cats)], np.int64))],
                      f"{column}_block")
        blocks.append(g.node("Cast", [flat], f"{column}_cast", to=_onnx_type(g, net.dtype)))
    if len(blocks) == 1:
        return blocks[0]
    return g.node("Concat", blocks, "features", axis=1)


def _onnx_type(g, dtype):
    return g.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


# -- public entry points -------------------------------------------------------------------------

def to_onnx_model(net):
    """The ONNX ModelProto of ``net`` (checked with onnx.checker); see the module docstring.

    Raises OnnxMissing (an ImportError) without onnx, TypeError/ValueError for a network or
    preprocessor the export does not cover.
    """
    from .losses import BinaryCrossEntropy
    from .network import Network
    if not isinstance(net, Network):
        raise TypeError(f"net: expected a fastnn.Network, got {type(net).__name__}")
    g = _Builder()
    onnx, helper = g.onnx, g.onnx.helper
    elem = _onnx_type(g, net.dtype)
    pre = getattr(net, "preprocessor", None)
    graph_inputs = []
    if pre is None:
        x = g.name("input")
        graph_inputs.append(helper.make_tensor_value_info(x, elem, ["N", net.n_features]))
    else:
        _check_preprocessor(pre, net)
        columns = {}
        numeric = set(pre.numeric_columns)
        for column in pre.feature_columns:
            columns[column] = g.name(str(column))
            kind = onnx.TensorProto.DOUBLE if column in numeric else onnx.TensorProto.STRING
            graph_inputs.append(helper.make_tensor_value_info(columns[column], kind, ["N", 1]))
        x = _preprocessing(g, pre, net, columns)
    # the outputs' names, before any node can take them
    names = {n: g.name(n) for n in ("label", "probabilities", "predictions")}
    index, values = _head(g, net, _network_body(g, net, x))
    probabilities = index is not None
    if not probabilities and getattr(pre, "task", None) == "classification":
        # a table's classifier trained with mse: the class of its largest output, as predict gives
        index = g.node("ArgMax", [values], "label_index", axis=1, keepdims=0)
    shape = ["N", net.n_outputs] if net.n_outputs > 1 or not probabilities else ["N"]
    outputs = []
    if index is not None:
        multilabel = isinstance(net.loss, BinaryCrossEntropy) and net.n_outputs > 1
        classes = getattr(pre, "classes", None)
        if classes is not None and not multilabel:
            label, kind = _class_names(g, index, classes)
        else:  # class indices, or the 0/1 matrix of a multi-label network
            label, kind = index, onnx.TensorProto.INT64
        outputs.append(helper.make_tensor_value_info(
            g.node("Identity", [label], None, out=names["label"]), kind,
            shape if multilabel else ["N"]))
    outputs.append(helper.make_tensor_value_info(
        g.node("Identity", [values], None,
               out=names["probabilities" if probabilities else "predictions"]), elem, shape))
    graph = helper.make_graph(g.nodes, "fastnn", graph_inputs, outputs, g.initializers)
    opsets = [helper.make_opsetid("", OPSET)]
    if pre is not None:
        opsets.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))
    from . import __version__
    model = helper.make_model(graph, opset_imports=opsets, producer_name="fastnn",
                              producer_version=__version__)
    # IR 8 goes with opset 17; newer onnx releases would stamp their own newest IR version,
    # which older onnxruntime releases refuse to load.
    model.ir_version = min(model.ir_version, 8)
    model.doc_string = repr(net)
    helper.set_model_props(model, {"fastnn.loss": type(net.loss).__name__,
                                   "fastnn.dtype": net.dtype.name})
    onnx.checker.check_model(model, full_check=True)
    return model


def save_onnx(net, path):
    """Write ``net`` as an ONNX file at ``path`` (atomically); returns the path."""
    path = os.fspath(path)
    model = to_onnx_model(net)
    with atomic_write(path) as f:
        f.write(model.SerializeToString())
    return path


# -- scikit-learn: converters registered with skl2onnx --------------------------------------------

def _shape_calculator(operator):
    from skl2onnx.common.data_types import Int64TensorType
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
    calculate_linear_classifier_output_shapes(operator)
    est = operator.raw_operator
    if _multilabel(est):  # skl2onnx reads scikit-learn's own flag, multilabel_
        n = operator.inputs[0].get_first_dimension()
        operator.outputs[0].set_type(Int64TensorType([n, len(est.classes_)]))


def _multilabel(est):
    return getattr(est, "_multilabel", False)


def _regressor_shape_calculator(operator):
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
    from skl2onnx.common.shape_calculator import check_input_and_output_numbers
    check_input_and_output_numbers(operator, input_count_range=1, output_count_range=1)
    kind = DoubleTensorType if _input_dtype(operator) == np.float64 else FloatTensorType
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].set_type(kind([n, operator.raw_operator.n_outputs_]))


def _input_dtype(operator):
    """The dtype of the graph's outputs: float64 for a double input, else float32."""
    double = type(operator.inputs[0].type).__name__ == "DoubleTensorType"
    return np.dtype(np.float64 if double else np.float32)


def _sklearn_body(g, operator):
    """The estimator's network outputs (N, n_outputs), in its dtype, from the operator's input."""
    net = operator.raw_operator.network_
    x = operator.inputs[0].full_name
    if _input_dtype(operator) != net.dtype or type(operator.inputs[0].type).__name__ not in (
            "FloatTensorType", "DoubleTensorType"):
        x = g.node("Cast", [x], "input_cast", to=_onnx_type(g, net.dtype))
    return _network_body(g, net, x)


def _to_output(g, operator, value, position, dtype=None):
    """Identity from value to the operator's output ``position``, cast to dtype first."""
    if dtype is not None and dtype != operator.raw_operator.network_.dtype:
        value = g.node("Cast", [value], "output_cast", to=_onnx_type(g, dtype))
    g.container.add_node("Identity", [value], [operator.outputs[position].full_name],
                         name=g.scope.get_unique_operator_name("Identity"))


def _sklearn_converter(scope, operator, container):
    est = operator.raw_operator
    net = est.network_
    g = _SklearnBuilder(scope, container)
    outputs = _sklearn_body(g, operator)
    multilabel = _multilabel(est)
    if multilabel or est.out_activation_ == "logistic":
        # the estimator's rule: label where P > 0.5
        proba = _sigmoid(g, outputs, net.dtype)
        positive = g.node("Greater", [proba, g.const("half", np.array(0.5, net.dtype))], "positive")
        index = g.node("Cast", [positive], "label_index", to=g.onnx.TensorProto.INT64)
        if not multilabel:  # one logistic unit: columns P(class 0), P(class 1)
            proba = g.node("Concat", [g.node("Sub", [g.const("one", np.array(1, net.dtype)), proba],
                                             "negative"), proba], "proba_pair", axis=1)
            index = g.node("Squeeze", [index, g.const("axis1", np.array([1], np.int64))], "index")
    else:
        index, proba = _head(g, net, outputs)
    if multilabel or container.get_options(est, dict(nocl=False))["nocl"]:
        label = index  # the 0/1 matrix, or class indices instead of classes_
    else:
        label, _ = _class_names(g, index, est.classes_)
    _to_output(g, operator, label, 0)
    _to_output(g, operator, proba, 1, _input_dtype(operator))


def _sklearn_regressor_converter(scope, operator, container):
    est = operator.raw_operator
    g = _SklearnBuilder(scope, container)
    values = _sklearn_body(g, operator)
    if est.out_activation_ == "exp":  # loss="poisson"
        values = g.node("Exp", [values], "exp")
    _to_output(g, operator, values, 0, _input_dtype(operator))


def register_sklearn_converter():
    """Register fastnn.sklearn.MLPClassifier and MLPRegressor with skl2onnx, so that
    ``skl2onnx.to_onnx`` converts them (alone or inside a Pipeline) with scikit-learn's outputs.

    MLPClassifier: ``label`` (N,) from classes_ and ``probabilities`` (N, n_classes) (two columns
    for two classes), a ZipMap unless ``options={id(est): {"zipmap": False}}``; ``"nocl": True``
    gives class indices as labels; multi-label: ``label`` (N, K) int64 0/1 and ``probabilities``
    (N, K). MLPRegressor: ``variable`` (N, n_outputs) (exp of the outputs for loss="poisson").
    Probabilities and values are float64 for a double input, else float32. Raises OnnxMissing
    (an ImportError) without skl2onnx. Safe to call twice."""
    skl2onnx = _require("skl2onnx")
    from .sklearn import MLPClassifier, MLPRegressor
    skl2onnx.update_registered_converter(MLPClassifier, SKLEARN_ALIAS, _shape_calculator,
                                         _sklearn_converter,
                                         options={"zipmap": [True, False, "columns"],
                                                  "nocl": [False, True]})
    skl2onnx.update_registered_converter(MLPRegressor, SKLEARN_REGRESSOR_ALIAS,
                                         _regressor_shape_calculator,
                                         _sklearn_regressor_converter)
