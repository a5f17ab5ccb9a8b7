"""The compiled engine's interface (``unsupported_reason``, ``CompiledEngine``) over today's
NativeMLP (fastnn._fastpath), which trains dropout-free MLPs ending in softmax cross-entropy,
without sample weights, with SGD or Adam. The training loop (fastnn._training) calls only
these two names, so a compiled engine that trains more networks replaces this module.
"""
import weakref

from ._fastpath import NativeMLP

# network -> its NativeMLP, kept between fits: the thread choice it measured stays valid.
_NATIVE = weakref.WeakKeyDictionary()


def _native(network):
    cached = _NATIVE.get(network)
    if cached is None or cached[0] is not network._steps:
        cached = _NATIVE[network] = (network._steps,
                                     NativeMLP.for_network(network, network._steps, network.loss))
    return cached[1]


def unsupported_reason(network, optimizer, sample_weight):
    """None when the compiled engine trains ``network`` with ``optimizer`` (and sample weights
    when ``sample_weight`` is not None); else one short phrase saying why not."""
    if _native(network) is None:
        return ("it runs only Linear + activation blocks without Dropout, ending in "
                "SoftmaxCrossEntropy without an activation")
    if not NativeMLP.applies(optimizer):
        return f"optimizer {type(optimizer).__name__} has no compiled step"
    if sample_weight is not None:
        return "sample weights have no compiled path"
    return None


class CompiledEngine:
    """Whole runs of training steps in one native call per chunk (see fastnn._fastpath)."""

    def __init__(self, network, optimizer, X, targets, sample_weight, batch_size):
        reason = unsupported_reason(network, optimizer, sample_weight)
        if reason is not None:
            raise ValueError(f"the compiled engine cannot train this network: {reason}")
        self.network, self.optimizer = network, optimizer
        self.X, self.targets, self.batch_size = X, targets, batch_size
        self.native = _native(network)

    def run_epoch(self, order, rng, bar, on_diverged):
        """Train on rows ``order``; returns (loss_sum, weight_sum, correct, seen). rng is not
        used: these networks have no Dropout. The native loop checks the loss of each step."""
        net = self.network
        net._fit_params = net.parameters()  # what NativeMLP trains
        total, correct, seen = self.native.run_epoch(
            self.X, self.targets, order, self.batch_size, self.optimizer, bar, net.gradients(),
            lambda step: on_diverged(step, "loss"))
        return total, float(seen), correct, seen
