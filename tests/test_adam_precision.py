"""Adam's moment updates with betas near 1 in float32: 1 - beta is taken in double and rounded
once, as the twin takes it (in float32, 1 - 0.99999f keeps only a few significant digits)."""
import numpy as np
import pytest

from fastnn import Adam, Linear, Network, Sigmoid, SoftmaxCrossEntropy, ops, reference


@pytest.mark.parametrize("beta1, beta2", [(0.9, 0.999), (0.9, 0.9999), (0.9, 0.99999), (0.99999, 0.999)])
@pytest.mark.parametrize("update", ["adam_update", "adamw_update"])
def test_float32_moments_match_the_twin_for_betas_near_one(update, beta1, beta2):
    rng = np.random.default_rng(0)
    start = [np.zeros(1000, np.float32), rng.standard_normal(1000).astype(np.float32),
             rng.standard_normal(1000).astype(np.float32), rng.random(1000).astype(np.float32)]
    kernel, twin = [a.copy() for a in start], [a.copy() for a in start]
    getattr(ops, update)(*kernel, 3, lr=1.0, beta1=beta1, beta2=beta2, eps=1e-30)
    getattr(reference, update)(*twin, 3, lr=1.0, beta1=beta1, beta2=beta2, eps=1e-30)
    for name, a, b in zip(("param", "grad", "exp_avg", "exp_avg_sq"), kernel, twin):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7, err_msg=name)


def test_the_training_loops_second_moments_match_float64_for_beta2_near_one():
    """One full-batch Adam step of the compiled loop in float32 against the same step in
    float64: the second moments agree to float32 rounding (1e-3 apart when 1 - beta2 was
    rounded in float32)."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((64, 12))
    y = rng.integers(0, 3, 64)
    moments = []
    for dtype in ("float32", "float64"):
        net = Network([Linear(12, 16), Sigmoid(), Linear(16, 3)], loss=SoftmaxCrossEntropy(),
                      dtype=dtype, seed=0)
        optimizer = Adam(lr=1e-3, betas=(0.9, 0.99999))
        net.fit(X.astype(dtype), y, epochs=1, batch_size=64, optimizer=optimizer, shuffle=False,
                progress=False, engine="compiled")
        moments.append(optimizer.state_dict()["state"]["exp_avg_sq"])
    for v32, v64 in zip(*moments):
        np.testing.assert_allclose(v32, v64, rtol=1e-4, atol=1e-12)
