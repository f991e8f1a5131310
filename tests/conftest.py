import os
import warnings

import matplotlib

matplotlib.use("Agg")
os.environ.setdefault("PYTHONHASHSEED", "0")
# PyTensor logs a graph rewrite that fails and compiles the graph without it; here it fails the test (and the
# notebooks and commands the tests start, which inherit the flag).
os.environ["PYTENSOR_FLAGS"] = ",".join(filter(None, (os.environ.get("PYTENSOR_FLAGS"), "on_opt_error=raise")))

import pytest

# One BLAS thread per pytest-xdist worker (and per process a worker starts: notebook kernels, the zoo command). The
# workers already fill every core; OpenBLAS's own threads on top of them spin while they wait and took the cores
# from the other worker: the missing-data and trivariate contract tests on two workers ran in 216 s, 52 s with this.
if os.environ.get("PYTEST_XDIST_WORKER"):
    from threadpoolctl import threadpool_limits

    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"
    _BLAS_LIMIT = threadpool_limits(limits=1, user_api="blas")


@pytest.fixture(autouse=True)
def _quiet_future_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


# Under pytest-xdist ``make test`` runs ``-n auto --dist loadscope --no-loadscope-reorder`` with the scheduler below:
# a group of tests runs in one worker, so tests that share module-level fixtures and caches are never split and
# nothing is computed twice. A group is a file, except in the files whose parametrized tests are independent per
# model (the contract test, the small studies) or per notebook, where the group is the first part of the test's id
# (the model's or the notebook's name). (xdist's own ``loadgroup`` renames node ids, which pytest 9 no longer lets
# it do, so the groups are derived from the ids here.)
_SPLIT = ("test_generic", "test_study", "test_notebooks")

# Seconds each of the slowest groups took on the 2-core reference machine on an empty compile cache (the first run on a
# machine, the slowest case), one BLAS thread per worker; about 950 s in all (590 s with the cache filled). The groups
# are handed out slowest first, so the long ones do not start last and leave one worker idle.
_SECONDS = {
    "test_pathfinder": 115, "test_notebooks-08_simulation_study": 85, "test_generic-gaussian_mixture": 79,
    "test_hmm": 75, "test_functions": 65, "test_study": 54, "test_lda": 54, "test_gaussian_mixture": 39,
    "test_diagnostics": 32, "test_chunked": 26, "test_notebooks-06_segmentation": 24, "test_study-gaussian_mixture": 23,
    "test_notebooks-09_online_em": 23, "test_reliability": 20, "test_notebooks-07_limits": 19, "test_properties": 17,
    "test_study-hmm": 16, "test_missing_data": 15, "test_notebooks-04_em_gaussian_mixture": 14,
    "test_generic-poisson": 12, "test_samplers": 11, "test_study-missing_data": 10,
    "test_trust": 110, "test_starts": 45, "test_scaling": 40, "test_reference_posteriors": 15,
}


def group_of(nodeid: str) -> str:
    """The scheduling group of a test: its file's name, or for the files in ``_SPLIT`` and a parametrized test,
    the file's name and the first part of the test's id (``test_generic-hmm`` for
    ``tests/test_generic.py::test_contract[hmm-earthquakes-mle]``)."""
    path, _, name = nodeid.partition("::")
    group = os.path.splitext(os.path.basename(path))[0]
    if group in _SPLIT and name.endswith("]") and "[" in name:
        group += "-" + name[name.index("[") + 1:-1].split("-")[0]
    return group


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks into the node ids it schedules by
def pytest_collection_modifyitems(config, items):
    # slowest groups first (a stable sort: the rest keep the order of collection)
    items.sort(key=lambda item: -_SECONDS.get(group_of(item.nodeid), 0))


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return GroupScheduling(config, log)
