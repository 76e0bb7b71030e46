"""The notebooks in notebooks/ run top to bottom in a fresh Jupyter kernel on the real data (nbclient), and are
kept without outputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
REAL_DATA = os.environ.get("DLDOJO_DATA", "")


def test_the_notebooks_exist_and_hold_no_outputs():
    nbformat = pytest.importorskip("nbformat")

    assert [p.name for p in NOTEBOOKS][:1] == ["00_start_here.ipynb"] and len(NOTEBOOKS) >= 5
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name}: commit it without outputs"


@pytest.mark.slow
@pytest.mark.skipif(not REAL_DATA, reason="set DLDOJO_DATA to the real datasets to run the notebooks")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_without_errors(path, monkeypatch, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")

    # the kernel inherits this environment: runs in a temporary folder, the real data, nothing downloaded
    monkeypatch.setenv("DLDOJO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("DLDOJO_OFFLINE", "1")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError (with the cell and its error) on any failing cell
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors


@pytest.mark.slow
def test_inline_figures_still_show_after_a_run(monkeypatch, tmp_path):
    """Experiments select matplotlib's Agg backend; in a notebook the API puts the inline backend back, so the
    user's own figures still appear (a figure made after the run is an image output)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")

    monkeypatch.setenv("DLDOJO_RUNS", str(tmp_path / "runs"))
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in (
        "import dldojo\nr = dldojo.run('q-table-cartpole', preset='smoke', quiet=True)",
        "r.history.plot('episode_return')",
    )])
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3").execute()
    shown = [o for o in notebook.cells[1].outputs if "image/png" in o.get("data", {})]
    assert len(shown) == 1, notebook.cells[1].outputs
