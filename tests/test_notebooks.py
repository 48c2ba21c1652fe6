"""The notebooks as a reader and an editor meet them: each paired with a percent-format script
that holds the same cells (edit either), saved outputs readable without a kernel, and a first
cell that links the committed embedded-profile reports."""
import json
import re
from pathlib import Path

import jupytext
import nbformat
import pytest

from modsep_utils import run

ROOT = Path(__file__).resolve().parent.parent
BOOKS = run.notebooks()
REPORTS = sorted((ROOT / "reports" / "embedded").glob("*/[0-9][0-9]_*.ipynb"))


def _cells(nb):
    return [(c.cell_type, c.source.strip(), c.metadata.get("tags", [])) for c in nb.cells]


@pytest.mark.parametrize("book", BOOKS, ids=lambda p: p.stem)
def test_each_notebook_and_its_script_hold_the_same_cells(book):
    script = book.with_suffix(".py")
    assert script.exists(), f"{script.name} missing: run .venv/bin/jupytext --sync {book}"
    assert _cells(jupytext.read(script)) == _cells(nbformat.read(book, as_version=4)), \
        f"{book.name} and {script.name} differ: run .venv/bin/jupytext --sync notebooks/*.ipynb"


def test_a_script_edit_reaches_the_notebook(tmp_path):
    """Either side can be edited: jupytext --sync carries a script's edit into the notebook
    and keeps the notebook's outputs."""
    from jupytext.cli import jupytext as cli
    book = tmp_path / "07_explore_pairs.ipynb"
    book.write_text((ROOT / "notebooks" / book.name).read_text())
    (tmp_path / "jupytext.toml").write_text((ROOT / "notebooks/jupytext.toml").read_text())
    cli(["--sync", str(book)])                      # writes the script beside it
    script = book.with_suffix(".py")
    text = script.read_text().replace('experiment = "vit"', 'experiment = "lm"')
    script.write_text(text)
    import os
    os.utime(script, (book.stat().st_mtime + 5,) * 2)  # the script is the newer side
    cli(["--sync", str(book)])
    nb = nbformat.read(book, as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert 'experiment = "lm"' in params.source
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("book", BOOKS + REPORTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_saved_outputs_read_without_a_kernel(book):
    nb = json.loads(book.read_text())
    assert "widgets" not in nb["metadata"], "widget state: a raw repr without the kernel"
    # as JupyterLab writes it when it starts the kernel: else opening marks the notebook modified
    assert nb["metadata"]["kernelspec"] == run.kernelspec()
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            assert run.WIDGET_VIEW not in out.get("data", {}), cell["source"][:2]
            text = "".join(out.get("text", ""))
            assert "\r" not in text, f"a progress bar's frames: {text[:80]!r}"
            assert not re.search(r"\b0%\|", text), f"a progress bar at 0%: {text[:80]!r}"
        assert "execution" not in cell.get("metadata", {})


@pytest.mark.parametrize("book", BOOKS, ids=lambda p: p.stem)
def test_the_first_cell_links_the_embedded_reports(book):
    first = nbformat.read(book, as_version=4).cells[0]
    assert first.cell_type == "markdown"
    for exp in ("vit", "lm"):
        link = f"../reports/embedded/{exp}/{book.name}"
        assert f"]({link})" in first.source
        assert (book.parent / link).exists(), f"{link}: run python -m modsep_utils.run " \
                                              f"--profile embedded --experiment {exp}"


def test_sanitize_keeps_what_reads_and_drops_what_does_not():
    nb = nbformat.v4.new_notebook(metadata={"widgets": {"state": {}},
                                            "kernelspec": {"name": "python3",
                                                           "display_name": "Python 3"},
                                            "papermill": {"parameters": {"a": 1},
                                                          "start_time": "t", "duration": 1}})
    cell = nbformat.v4.new_code_cell("x", metadata={"tags": [], "execution": {"iopub.status.busy": "2026-01-01T00:00:00Z"},
                                                     "papermill": {"duration": 1}})
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={run.WIDGET_VIEW: {"model_id": "m"},
                                                     "text/plain": "VBox(children=(...))"}),
        nbformat.v4.new_output("stream", name="stderr", text="  0%|  | 0/4\r100%|##| 4/4\n"),
        nbformat.v4.new_output("stream", name="stderr", text="\r"),
        nbformat.v4.new_output("display_data", data={"image/png": "iVBOR", "text/plain": "F"}),
    ]
    tagged = nbformat.v4.new_code_cell("p", metadata={"tags": ["parameters"]})
    nb.cells = [cell, tagged]
    run.sanitize(nb)
    assert "widgets" not in nb.metadata and nb.metadata.kernelspec == run.kernelspec()
    assert nb.metadata.papermill == {"parameters": {"a": 1}}
    assert [o.output_type for o in cell.outputs] == ["stream", "display_data"]
    assert cell.outputs[0].text == "100%|##| 4/4\n"
    assert cell.metadata == {} and tagged.metadata == {"tags": ["parameters"]}


def test_links_are_retargeted_for_the_report_folder():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(
        "[LM](../reports/embedded/lm/03_pruning.ipynb), [web](https://x.org/a), [here](#top)")]
    run.retarget_links(nb, ROOT / "notebooks", ROOT / "reports" / "embedded" / "lm")
    assert nb.cells[0].source == "[LM](03_pruning.ipynb), [web](https://x.org/a), [here](#top)"


def test_execute_saves_a_sanitised_notebook_atomically(tmp_path):
    """The real papermill path (a kernel starts): a progress bar and a widget are run, and the
    saved notebook keeps only their readable final state; the source is not touched."""
    book = tmp_path / "nb.ipynb"
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": run.kernelspec()})
    nb.cells = [nbformat.v4.new_code_cell("n = 2", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(
                    "import sys, ipywidgets\n"
                    "for i in range(n + 1):\n"
                    "    sys.stderr.write(f'\\r{50 * i}%|')\n"
                    "sys.stderr.write('\\n')\n"
                    "ipywidgets.IntSlider()")]
    nbformat.write(nb, book)
    before = book.read_text()
    out = tmp_path / "out" / "nb.ipynb"
    run.execute(book, {"n": 2}, out)
    assert book.read_text() == before
    saved = nbformat.read(out, as_version=4)
    outputs = [o for c in saved.cells for o in c.get("outputs", [])]
    assert [o.get("text") for o in outputs if o.output_type == "stream"] == ["100%|\n"]
    assert not any(run.WIDGET_VIEW in o.get("data", {}) for o in outputs)
    assert not list(out.parent.glob("*.tmp"))
