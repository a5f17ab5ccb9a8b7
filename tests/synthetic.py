"""Synthetic data for the tests."""
import numpy as np


def blobs(n, f, k=3, seed=0):
    """k well-separated Gaussian clusters: (X float32 (n, f), y int64 (n,))."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, f)) * 3
    y = rng.integers(0, k, n)
    return (centres[y] + rng.standard_normal((n, f))).astype(np.float32), y
