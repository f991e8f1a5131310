"""Every notebook runs top to bottom (in a fresh namespace of one kernel per test process), and is stored without
outputs."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_there_is_a_notebook_per_classic_example():
    names = [p.name for p in NOTEBOOKS]
    assert len(names) == 9
    for key in ("normal", "poisson", "logistic", "gaussian_mixture", "missing_data", "segmentation", "limits",
                "simulation_study", "online_em"):
        assert any(key in n for n in names), key


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.fixture(scope="session")
def kernel():
    """One Python kernel per test process, started in the notebooks' folder: each notebook runs in it after
    ``%reset -f`` and ``%matplotlib inline`` (a fresh namespace, so a missing import still fails, and the inline
    figures a new kernel shows), without paying the kernel's start and the imports of PyMC and the zoo again for
    every notebook (about 4 s each)."""
    from jupyter_client import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(NOTEBOOKS[0].parent))
    yield km
    km.shutdown_kernel(now=True)


def _reset(km):
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        # a fresh kernel's namespace and plotting backend (the zoo's report modules switch matplotlib to Agg)
        reply = kc.execute_interactive("%reset -f\n%matplotlib inline", timeout=120, output_hook=lambda msg: None)
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        kc.stop_channels()


def test_a_notebook_sees_nothing_of_the_one_before(kernel):
    from nbclient.exceptions import CellExecutionError

    first, second, third = (nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src)]) for src in (
        "import matplotlib\nimport numpy as np\nleft_over = 1\nmatplotlib.use('Agg')",  # as the zoo's reports do
        "np, left_over",
        "import matplotlib\nassert 'inline' in matplotlib.get_backend(), matplotlib.get_backend()"))
    _reset(kernel)
    NotebookClient(first, km=kernel, timeout=120).execute()
    _reset(kernel)
    with pytest.raises(CellExecutionError, match="NameError"):
        NotebookClient(second, km=kernel, timeout=120).execute()
    _reset(kernel)
    NotebookClient(third, km=kernel, timeout=120).execute()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, kernel):
    nb = nbformat.read(path, as_version=4)
    _reset(kernel)
    client = NotebookClient(nb, km=kernel, timeout=900, resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()  # raises CellExecutionError, naming the cell, on any error
    finally:
        if client.kc is not None:
            client.kc.stop_channels()
    # every code cell ran, in order, and the notebook shows something (a figure or a table), not only silence
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1))
    kinds = {o.get("output_type") for c in nb.cells if c.cell_type == "code" for o in c.outputs}
    assert kinds & {"display_data", "execute_result"}
