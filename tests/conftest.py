import os
import warnings

import matplotlib

matplotlib.use("Agg")
os.environ.setdefault("PYTHONHASHSEED", "0")

import pytest


@pytest.fixture(autouse=True)
def _quiet_future_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


# Under pytest-xdist (``make test`` runs ``-n auto --dist loadgroup``) a group runs in one worker, so tests that share
# module-level fixtures and caches are never split: a group is a file, except in the files whose tests are
# independent per model (the contract test, the small studies) or per notebook, where the group is that parameter.
_SPLIT = {"test_generic": ("model_name",), "test_study": ("name",), "test_notebooks": ("path",)}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks into the node ids it schedules by
def pytest_collection_modifyitems(config, items):
    for item in items:
        group = item.path.stem
        params = getattr(getattr(item, "callspec", None), "params", {})
        for key in _SPLIT.get(group, ()):
            if key in params:
                value = params[key]
                group += "-" + str(getattr(value, "stem", value))
        item.add_marker(pytest.mark.xdist_group(group))
