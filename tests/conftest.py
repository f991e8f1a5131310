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
