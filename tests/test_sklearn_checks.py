"""scikit-learn's estimator checks on fastnn.sklearn.MLPClassifier and MLPRegressor, and the
list of checks compared with the one scikit-learn runs on its own MLP estimators.

Skipped as a whole when scikit-learn is not installed.
"""
import pytest

pytest.importorskip("sklearn")

from sklearn.neural_network import MLPClassifier as SkClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkRegressor  # noqa: E402
from sklearn.utils.estimator_checks import (estimator_checks_generator,  # noqa: E402
                                            parametrize_with_checks)

from fastnn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")]

# Every check passes for these configurations, so no expected failures are declared. They
# cover the three solvers, the schedules, no hidden layer, two hidden
# layers and both regression losses. The checks' data sets are small, so batch_size="auto" is
# the whole set: check_sample_weight_equivalence_on_dense_data (a weight of 2 is the row given
# twice) then holds to rounding, as it does for scikit-learn's own MLPs under the settings it
# tests them with (lbfgs for the classifier, full-batch sgd for the regressor). Not under
# "invscaling": its rate falls with the number of rows seen, which repeating rows changes.
ESTIMATORS = [
    MLPClassifier(solver="lbfgs", hidden_layer_sizes=(8,), max_iter=100, random_state=0),
    MLPClassifier(solver="sgd", learning_rate_init=0.1, hidden_layer_sizes=(8,), max_iter=50,
                  random_state=0),
    MLPClassifier(learning_rate_init=0.01, hidden_layer_sizes=(8, 4), activation="tanh",
                  dtype="float64", max_iter=100, random_state=0),
    MLPClassifier(hidden_layer_sizes=(), activation="identity", solver="sgd",
                  learning_rate="adaptive", learning_rate_init=0.2, max_iter=50,
                  random_state=0),
    MLPRegressor(max_iter=100, random_state=0),
    MLPRegressor(solver="sgd", learning_rate_init=0.01, hidden_layer_sizes=(8,), max_iter=100,
                 learning_rate="adaptive", random_state=0),
    MLPRegressor(solver="lbfgs", hidden_layer_sizes=(8,), max_iter=100, dtype="float64",
                 random_state=0),
    MLPRegressor(loss="poisson", solver="lbfgs", hidden_layer_sizes=(8,), max_iter=100,
                 random_state=0),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _check_names(estimator):
    return {getattr(check, "func", check).__name__
            for _, check in estimator_checks_generator(estimator, legacy=True, mark=None)}


@pytest.mark.parametrize("theirs, ours", [(SkClassifier(), MLPClassifier()),
                                          (SkRegressor(), MLPRegressor())],
                         ids=["classifier", "regressor"])
def test_every_check_of_sklearns_mlp_runs_on_ours(theirs, ours):
    missing = _check_names(theirs) - _check_names(ours)
    assert missing == set()
    # the sample-weight and multi-label checks that the issue found missing run now
    names = _check_names(ours)
    assert "check_sample_weight_equivalence_on_dense_data" in names
    assert "check_all_zero_sample_weights_error" in names
    assert "check_sample_weight_equivalence_on_sparse_data" in names  # sparse X is accepted
    if isinstance(ours, MLPClassifier):
        assert {"check_classifiers_multilabel_representation_invariance",
                "check_class_weight_classifiers"} <= names
