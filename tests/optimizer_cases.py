"""The optimizer settings the engine tests run every network with (one home for both files)."""
from fastnn.optim import SGD, Adam, AdamW

OPTIMIZERS = {
    "sgd": lambda: SGD(lr=0.1),
    "momentum": lambda: SGD(lr=0.05, momentum=0.9),
    "nesterov": lambda: SGD(lr=0.05, momentum=0.9, nesterov=True),
    "weight_decay": lambda: SGD(lr=0.05, momentum=0.5, weight_decay=0.01),
    "adam": lambda: Adam(lr=0.01, weight_decay=1e-3),
    "adamw": lambda: AdamW(lr=0.01, weight_decay=0.05),
}
