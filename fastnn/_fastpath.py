"""Whole runs of training steps in one native call, for the networks that allow it.

A plain MLP (Linear + optional activation blocks, no Dropout, softmax cross-entropy on the last
Linear's outputs) trained with SGD or Adam runs through ``_core.mlp_sgd_steps``: the batch gather,
forward, loss, backward and update of many steps happen in C without returning to Python. The
parameters, gradient buffers and optimizer states (SGD's velocities, Adam's moments and step
count) are the ones the layer-by-layer path uses, so the two paths can take turns (and
checkpoints do not care which one ran).
"""
import time

import numpy as np

from ._native import core as _core
from ._threads import blas_threads_limited, get_num_threads, threads_pinned
from .losses import SoftmaxCrossEntropy
from .optim import SGD, Adam, _check_state

_STEP_ELEMENTS = 1 << 23  # input values per native call: progress about every 0.05 s
_PROBE_STEPS = 16
# The parts each step's work is cut into (train.pxi's n_parts), whatever the thread count: the
# weights depend on the parts, not on the threads that run them, so a seed gives the same weights
# on any machine. Measured on 2 cores (784-128-10, batch 32 and 128) 1 and 2 threads run as fast
# with 4 parts as with one part per thread; see the README ("Threads and reproducibility").
N_PARTS = 4


class NativeMLP:
    """The compiled training loop for one network; ``applies`` says whether it can be used."""

    def __init__(self, network, dense_steps):
        self.network = network
        self.linears = [s.linear for s in dense_steps]
        self.activations = [s.act_code for s in dense_steps]  # codes of fastnn.activations
        self.activation_params = [s.act_param for s in dense_steps]
        self.dims = [self.linears[0].in_features] + [l.out_features for l in self.linears]
        self._buffers = {}
        self.threads = ThreadChooser()

    @classmethod
    def for_network(cls, network, steps, loss):
        """A NativeMLP when every step is a dropout-free fused Linear block and the last one
        feeds SoftmaxCrossEntropy without an activation; otherwise None."""
        if type(loss) is not SoftmaxCrossEntropy or not steps:
            return None
        if not all(type(s).__name__ == "_Dense" and s.p == 0 for s in steps):
            return None
        if steps[-1].act is not None:
            return None
        return cls(network, steps)

    @staticmethod
    def applies(optimizer):
        return type(optimizer) in (SGD, Adam)

    def _batch_buffers(self, batch, dtype):
        bufs = self._buffers.get(batch)
        if bufs is None:
            acts = [np.empty((batch, d), dtype) for d in self.dims]
            grads = [None] + [np.empty((batch, d), dtype) for d in self.dims[1:]]
            scratch = [np.empty((batch, d), dtype) for d in self.dims[1:]]
            labels = np.empty(batch, np.int64)
            self._buffers = {batch: (acts, grads, scratch, labels)}  # one batch size at a time
            bufs = self._buffers[batch]
        return bufs

    def run_epoch(self, X, y, order, batch_size, optimizer, bar, grads, on_diverged):
        """Train on rows ``order`` of X / y; returns (loss sum, correct, seen) like the Python
        path. ``on_diverged(step)`` builds the error raised at a non-finite loss (1-based step)."""
        net = self.network
        params = net._fit_params
        adam = type(optimizer) is Adam
        if adam:
            # The state Adam.step keeps: moments m and v, and its step count t.
            if not (_check_state(optimizer._m, params, "m") and _check_state(optimizer._v, params, "v")):
                optimizer._m = [np.zeros_like(p) for p in params]
                optimizer._v = [np.zeros_like(p) for p in params]
                optimizer.t = 0
            first_moment, second_moment = optimizer._m, optimizer._v
        else:
            if optimizer.momentum != 0.0 and not _velocity_matches(optimizer, params):
                optimizer._velocity = [np.zeros_like(p) for p in params]
            first_moment = optimizer._velocity if optimizer.momentum != 0.0 else None
            second_moment = None
        acts, grad_bufs, scratch, labels = self._batch_buffers(batch_size, net.dtype)
        order = np.ascontiguousarray(order, dtype=np.int64)
        y = np.ascontiguousarray(y, dtype=np.int64)
        n_steps = -(-len(order) // batch_size)
        chunk = max(1, _STEP_ELEMENTS // (batch_size * self.dims[0]))
        total, correct, seen = 0.0, 0, 0
        self.threads.start(get_num_threads(), pinned=threads_pinned())
        with blas_threads_limited(1):  # the loop's own threads split the work
            first = 0
            while first < n_steps:
                threads, probing = self.threads.next()
                # A probe needs only a few steps: under contention a slow choice costs ms per step.
                stop = min(first + (min(chunk, _PROBE_STEPS) if probing else chunk), n_steps)
                t0 = time.perf_counter()
                loss_sum, c, s, failed = _core.mlp_sgd_steps(
                    params[0::2], params[1::2],
                    first_moment[0::2] if first_moment else [], first_moment[1::2] if first_moment else [],
                    grads[0::2], grads[1::2], acts, grad_bufs, scratch, self.activations,
                    X, y, order, labels, first, stop, batch_size,
                    net.input_scale, net.input_shift, optimizer.lr, 0.0 if adam else optimizer.momentum,
                    optimizer.weight_decay, False if adam else optimizer.nesterov,
                    N_PARTS, threads, activation_params=self.activation_params,
                    **self._adam_arguments(optimizer, second_moment))
                if adam:  # the steps applied (a failed step applies nothing)
                    optimizer.t += (failed if failed >= 0 else stop) - first
                self.threads.record(threads, (time.perf_counter() - t0) / (stop - first))
                total, correct, seen = total + loss_sum, correct + c, seen + s
                if failed >= 0:
                    raise on_diverged(failed + 1)
                if bar is not None:
                    bar.update(stop - first)
                    bar.set_postfix_str(f"loss={total / seen:.4f}", refresh=False)
                first = stop
        return total, correct, seen

    @staticmethod
    def _adam_arguments(optimizer, second_moment):
        """The keyword arguments of mlp_sgd_steps that make its steps Adam's (none for SGD)."""
        if second_moment is None:
            return {}
        return {"adam_second_w": second_moment[0::2], "adam_second_b": second_moment[1::2],
                "beta1": optimizer.beta1, "beta2": optimizer.beta2, "eps": optimizer.eps,
                "adam_steps_before": optimizer.t}


def _velocity_matches(optimizer, params):
    v = optimizer._velocity
    return (v is not None and len(v) == len(params)
            and all(a.shape == p.shape and a.dtype == p.dtype for a, p in zip(v, params)))


class ThreadChooser:
    """Picks the thread count of each native call from measured time per step.

    Several threads meet at barriers several times per step; when another process wants a
    core, each meeting waits for the scheduler and one thread is then many times faster. So,
    unless the count was pinned with fastnn.set_num_threads, the loop times each call, uses
    the faster of ``configured`` and 1 thread, and tries the other again after a number of
    calls that doubles each time it loses (back to the minimum when it wins). The first call
    with each count only warms up (thread start, first touch of the buffers) and is not counted.
    """

    MIN_INTERVAL, MAX_INTERVAL = 8, 256

    def __init__(self):
        self.configured, self.pinned = 1, True
        self.per_step, self.warmed = {}, set()
        self.current, self.interval, self.since_probe = 1, self.MIN_INTERVAL, 0

    def start(self, configured, pinned):
        if (configured, pinned) != (self.configured, self.pinned):
            self.configured, self.pinned = configured, pinned
            self.per_step, self.warmed = {}, set()
            self.current, self.interval, self.since_probe = configured, self.MIN_INTERVAL, 0

    def next(self):
        """(threads for the next call, whether that call is a probe)."""
        if self.pinned or self.configured == 1:
            return self.configured, False
        for candidate in (self.configured, 1):  # measure both once
            if candidate not in self.per_step:
                return candidate, True
        if self.since_probe >= self.interval:
            return (1 if self.current != 1 else self.configured), True
        return self.current, False

    def record(self, threads, seconds_per_step):
        if self.pinned or self.configured == 1:
            return
        if threads not in self.warmed:
            self.warmed.add(threads)
            return
        previous = self.per_step.get(threads)
        # A probe's figure replaces the old one (the load may have changed since); the count in
        # use is smoothed.
        if previous is None or threads != self.current:
            self.per_step[threads] = seconds_per_step
        else:
            self.per_step[threads] = 0.5 * (previous + seconds_per_step)
        if len(self.per_step) < 2:
            return
        best = min(self.per_step, key=self.per_step.get)
        if threads != self.current:  # a probe of the other count
            self.since_probe = 0
            if best == threads:
                self.current, self.interval = threads, self.MIN_INTERVAL
            else:
                self.interval = min(2 * self.interval, self.MAX_INTERVAL)
        else:
            self.since_probe += 1
            self.current = best
