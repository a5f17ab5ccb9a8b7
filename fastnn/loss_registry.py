"""The losses of fastnn: one entry each, from which everything else is derived.

An entry holds what every consumer needs: the name (``fastnn train --loss``, the reference
network's ``loss=``, the benchmark cases), the integer code the compiled kernels dispatch on
(``enum fnn_loss`` in src_c/kernels.h), the Loss class of :mod:`fastnn.losses` (also the
``type`` a saved model records), the op that computes the loss and its gradient in one pass
(``fastnn.ops.<op>``, compiled, and its NumPy twin ``fastnn.reference.<op>``), the kind of
targets it takes, scikit-learn's name for its output activation, and the compiled inference
heads of ``predict`` / ``predict_proba``, and its title on plots. :mod:`fastnn.losses`, the compiled training engine,
inference, the CLI, the scikit-learn estimators, the reference network and the tests read this
table. Nothing here imports NumPy: the CLI reads the names before any heavy import.

Every loss is a per-row loss l_i averaged over the rows (a weighted mean sum_i w_i l_i / sum_i w_i
with sample weights, scikit-learn's convention); its ops take ``(outputs, targets, grad_out=None,
reduction="mean", sample_weight=None)`` and return ``(loss, grad)``.

Adding a loss: one entry below with the next free code; in C, that code in ``enum fnn_loss``
(and FNN_LOSS_COUNT) of src_c/kernels.h, its row kernel in src_c/kernels_impl.h with its slot
in the kernel table (FNN_TABLE in kernels_internal.h, filled in kernels.c), its case in
``fnn_loss_rows`` (kernels_internal.h) and, unless its accuracy is the targets' argmax, its
branch in ``count_correct`` (mlp_impl.h); its Loss class in fastnn/losses.py (exported in
fastnn/__init__.py), its op in fastnn/ops.py and twin in fastnn/reference.py; and its row in
tests/test_loss_registry.py.
"""
from dataclasses import dataclass

from .activations import lookup


@dataclass(frozen=True)
class LossEntry:
    """One loss. ``targets`` is "labels" (integer class indices (N,), int64 in C) or "dense"
    ((N, K) values in the network's dtype); ``heads`` names the compiled inference heads
    (``_core.HEAD_<NAME>``) of ``predict`` and ``predict_proba`` for one output column per
    prediction."""

    name: str
    code: int
    loss_class: str
    op: str
    targets: str
    sklearn: str
    heads: tuple
    title: str


REGISTRY = (
    # softmax + cross-entropy on K >= 2 logits per row, integer class labels
    LossEntry("cross_entropy", 0, "SoftmaxCrossEntropy", "softmax_cross_entropy", "labels", "softmax",
              ("argmax", "softmax"), "Cross-entropy loss"),
    # binary cross-entropy on K >= 1 independent logits per row (binary or multi-label), 0/1 targets
    LossEntry("bce", 1, "BinaryCrossEntropy", "sigmoid_cross_entropy", "dense", "logistic",
              ("positive", "sigmoid"), "Binary cross-entropy loss"),
    # squared error averaged over the K outputs of a row (regression)
    LossEntry("mse", 2, "MSE", "mean_squared_error", "dense", "identity", ("outputs", "outputs"),
              "Mean squared error"),
)

NAMES = tuple(e.name for e in REGISTRY)
"""The ``fastnn train --loss`` choices, in code order."""

_BY_NAME = {e.name: e for e in REGISTRY}


def get(name, argname="loss"):
    """The entry called ``name``; ValueError listing the choices otherwise."""
    return lookup(_BY_NAME, name, argname, NAMES)


def for_sklearn(output_activation):
    """The entry whose output activation scikit-learn calls ``output_activation`` ("softmax",
    "logistic" or "identity"), or None."""
    return next((e for e in REGISTRY if e.sklearn == output_activation), None)
