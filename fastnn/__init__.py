"""fastnn: small neural networks on the CPU, fast.

Compiled, fused kernels (:mod:`fastnn.ops`, twins in :mod:`fastnn.reference`) under a small
Layer/Network API. Submodules and names load on first use, so ``import fastnn`` stays quick and
the compiled core (with scipy's BLAS) is loaded only when something needs it.
"""
import importlib

__version__ = "0.1.0"

# public name -> (submodule, attribute or None for the submodule itself)
_LAZY = {
    "ops": ("ops", None),
    "reference": ("reference", None),
    "testing": ("testing", None),
    "datasets": ("datasets", None),
    "tabular": ("tabular", None),
    "set_num_threads": ("_threads", "set_num_threads"),
    "get_num_threads": ("_threads", "get_num_threads"),
    "num_threads": ("_threads", "num_threads"),
    "show_config": ("_config", "show_config"),
    "Network": ("network", "Network"),
    "Linear": ("layers", "Linear"),
    "Sigmoid": ("layers", "Sigmoid"),
    "ReLU": ("layers", "ReLU"),
    "Tanh": ("layers", "Tanh"),
    "ScaledTanh": ("layers", "ScaledTanh"),
    "LeakyReLU": ("layers", "LeakyReLU"),
    "GELU": ("layers", "GELU"),
    "activations": ("activations", None),
    "Dropout": ("layers", "Dropout"),
    "SoftmaxCrossEntropy": ("losses", "SoftmaxCrossEntropy"),
    "BinaryCrossEntropy": ("losses", "BinaryCrossEntropy"),
    "MSE": ("losses", "MSE"),
    "SGD": ("optim", "SGD"),
    "Adam": ("optim", "Adam"),
    "AdamW": ("optim", "AdamW"),
    "StepLR": ("schedules", "StepLR"),
    "ExponentialLR": ("schedules", "ExponentialLR"),
    "CosineLR": ("schedules", "CosineLR"),
    "EarlyStopping": ("history", "EarlyStopping"),
    "History": ("history", "History"),
    "load": ("serialization", "load"),
    "TrainingDivergedError": ("errors", "TrainingDivergedError"),
    "TrainingUnstableWarning": ("errors", "TrainingUnstableWarning"),
    "ModelFormatError": ("errors", "ModelFormatError"),
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'fastnn' has no attribute {name!r}") from None
    module = importlib.import_module(f".{module_name}", __name__)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
