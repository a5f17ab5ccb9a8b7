"""fastnn.sklearn under GridSearchCV(n_jobs=2) with joblib's loky and dask backends: the same
cv_results_ scores as n_jobs=1, and each worker's fastnn takes the threads it was given."""
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
import joblib  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

from fastnn._cpulimits import available_cores  # noqa: E402
from fastnn.sklearn import MLPClassifier  # noqa: E402

from dask_cluster import dask_scheduler  # noqa: E402,F401 - a fixture

SCORES = ("split0_test_score", "split1_test_score", "split2_test_score", "mean_test_score")


def _search(n_jobs):
    X, y = load_digits(return_X_y=True)
    X, y = X[:600] / 16.0, y[:600]
    search = GridSearchCV(
        MLPClassifier(solver="sgd", learning_rate_init=0.05, batch_size=32, max_iter=4,
                      random_state=0),
        {"hidden_layer_sizes": [(16,), (32,)], "alpha": [1e-4, 1e-2]}, cv=3, n_jobs=n_jobs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: 4 epochs on purpose
        search.fit(X, y)
    return {key: search.cv_results_[key] for key in SCORES}


@pytest.fixture(scope="module")
def serial():
    return _search(1)


def _assert_same(results, expected):
    for key in SCORES:
        assert np.array_equal(results[key], expected[key]), key


def _worker_threads():
    import fastnn
    from fastnn._threads import thread_source
    return fastnn.get_num_threads(), thread_source()


def test_loky_gives_the_serial_scores(serial):
    with joblib.parallel_backend("loky"):
        _assert_same(_search(2), serial)


def test_loky_workers_take_the_threads_they_are_given():
    # Fresh workers: loky reuses its processes, and others (a sweep's) may have set a count.
    from joblib.externals.loky import get_reusable_executor
    get_reusable_executor().shutdown(wait=True)
    results = joblib.Parallel(n_jobs=2, backend="loky")(
        joblib.delayed(_worker_threads)() for _ in range(4))
    assert set(results) == {(max(1, available_cores()[0] // 2), "OMP_NUM_THREADS")}


def test_dask_backend_gives_the_serial_scores(serial, dask_scheduler):
    from distributed import Client

    from fastnn._threads import get_num_threads, thread_source
    with Client(dask_scheduler) as client:
        # The nanny starts each single-thread worker with OMP_NUM_THREADS=1: fastnn honours it.
        # (Functions of fastnn: the workers cannot import this test module.)
        assert set(client.run(get_num_threads).values()) == {1}
        assert set(client.run(thread_source).values()) == {"OMP_NUM_THREADS"}
        with joblib.parallel_backend("dask"):
            _assert_same(_search(2), serial)
