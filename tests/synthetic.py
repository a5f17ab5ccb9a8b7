"""Synthetic data for the tests."""
import numpy as np


def blobs(n, f, k=3, seed=0):
    """k well-separated Gaussian clusters: (X float32 (n, f), y int64 (n,))."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, f)) * 3
    y = rng.integers(0, k, n)
    return (centres[y] + rng.standard_normal((n, f))).astype(np.float32), y


def table(n=400, seed=0, missing=0.0):
    """A mixed table as a dict of 1-D arrays: numeric columns "age" (float) and "visits" (int),
    text columns "city" and "plan", a text label "segment" (3 classes, learnable from the
    inputs) and a numeric target "spend" (a smooth function of them plus a little noise).
    With missing > 0 that share of the age and city values is missing (NaN / None)."""
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 12, n)
    visits = rng.integers(0, 30, n)
    city = rng.choice(["Lyon", "Oslo", "Porto", "Quito"], n)
    plan = rng.choice(["basic", "pro"], n, p=[0.7, 0.3])
    bonus = {"Lyon": 0.0, "Oslo": 1.5, "Porto": -1.0, "Quito": 0.5}
    score = (age - 40) / 12 + (visits - 15) / 8 + np.array([bonus[c] for c in city]) \
        + np.where(plan == "pro", 1.0, 0.0)
    segment = np.where(score > 0.8, "gold", np.where(score > -0.6, "silver", "bronze"))
    spend = 50 + 20 * score + 3 * np.sin(age / 5) + rng.normal(0, 1, n)
    columns = {"age": age, "visits": visits, "city": city.astype(object), "plan": plan,
               "segment": segment, "spend": spend}
    if missing:
        columns["age"][rng.random(n) < missing] = np.nan
        columns["city"][rng.random(n) < missing] = None
    return columns
