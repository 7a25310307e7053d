"""preflight.check() in a real Jupyter kernel (nbclient + ipykernel), the way a notebook user runs it.

One notebook, made here: a fitting model with a custom layer defined in the notebook, a model whose weights
alone exceed the budget, a check interrupted by the kernel's interrupt, then two checks in a row. Each check
must leave exactly one result display (the progress display, replaced in place) holding the chart and the
findings, and no error output; the kernel must be alive at the end.
"""
from __future__ import annotations

import asyncio
import textwrap

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
# A real kernel runs a whole notebook (tens of seconds): the slow selection, run by CI (.ci/run).
pytestmark = pytest.mark.slow

SETUP = '''
import os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ["PREFLIGHT_FORK_SERVER"] = "1"  # a user's kernel: not the test suite's fork servers (conftest)
os.environ.pop("PREFLIGHT_FORK_SERVER_SOCKET", None)
os.environ.pop("PREFLIGHT_REPLAY_DIR", None)  # every child measured, as in a user's kernel
os.environ.pop("PREFLIGHT_REPLAY_FROM", None)
import numpy as np, keras, psutil, preflight

class ScaledDense(keras.layers.Layer):  # defined in the notebook: pickled by value for the child
    def __init__(self, units, scale=2.0, **kwargs):
        super().__init__(**kwargs)
        self.units, self.scale = units, scale
    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform")
    def call(self, inputs):
        return self.scale * keras.ops.matmul(inputs, self.kernel)
    def get_config(self):
        return {**super().get_config(), "units": self.units, "scale": self.scale}

inputs = keras.Input((64,))
hidden = ScaledDense(32, name="scaled")(inputs)
model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(hidden), name="notebook_mlp")
model.compile("adam", "sparse_categorical_crossentropy")
x = np.random.rand(256, 64).astype("float32")
y = np.random.randint(0, 10, 256)
'''
FITTING = 'preflight.check(model, (x, y), batch_size=32, budget="512MiB", steps=2)'
OVER_BUDGET = '''
big_inputs = keras.Input((1024,))
big = keras.Model(big_inputs, keras.layers.Dense(10)(keras.layers.Dense(20000, name="huge")(big_inputs)), name="big")
big.compile("adam", "mse")
report = preflight.check(big, budget="64MiB", steps=2)
assert report.fits is False, report.fits
assert report.document["floor"]["total_bytes"] > 64 * 2**20, report.document["floor"]
report
'''
INTERRUPTED = '''
try:
    preflight.check(model, (x, y), batch_size=32, budget="512MiB", steps=2)
    print("not interrupted")
except KeyboardInterrupt:
    print("interrupted; children left:", len(psutil.Process().children(recursive=True)))
'''
TWO_IN_A_ROW = '''
first = preflight.check(model, (x, y), batch_size=16, budget="512MiB", steps=2, probe_batch_sizes=[8, 16])
second = preflight.check(model, (x, y), batch_size=16, budget="512MiB", steps=2, probe_batch_sizes=[8, 16])
assert first.fits and second.fits
'''
CELLS = [SETUP, FITTING, OVER_BUDGET, INTERRUPTED, TWO_IN_A_ROW]
RESULTS_PER_CELL = {1: 1, 2: 1, 4: 2}
INTERRUPTED_CELL = 3


def displays(cell) -> list[dict]:
    """The cell's rich outputs: with the progress display replaced in place, only the results."""
    return [output["data"] for output in cell.outputs if output["output_type"] in ("display_data", "execute_result")]


def result_displays(cell) -> list[str]:
    """The HTML of each preflight result the cell shows."""
    return [data["text/html"] for data in displays(cell) if "preflight-notebook" in data.get("text/html", "")]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(textwrap.dedent(source).strip()) for source in CELLS]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = nbclient.NotebookClient(notebook, timeout=150, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path_factory.mktemp("nb"))}})

    async def run() -> bool:
        async with client.async_setup_kernel():
            for index, cell in enumerate(notebook.cells):
                if index != INTERRUPTED_CELL:
                    await client.async_execute_cell(cell, index)
                    continue
                running = asyncio.ensure_future(client.async_execute_cell(cell, index))
                while not cell.outputs and not running.done():  # the progress display: the child is starting
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)
                await client.km.interrupt_kernel()
                await running
            return await client.km.is_alive()

    alive = asyncio.run(run())
    return notebook, alive


def test_each_check_shows_one_result_with_the_chart_and_the_findings(executed):
    notebook, _ = executed
    for index, expected in RESULTS_PER_CELL.items():
        shown = result_displays(notebook.cells[index])
        assert len(shown) == len(displays(notebook.cells[index])) == expected, (index, notebook.cells[index].outputs)
        for data in displays(notebook.cells[index]):
            assert data["text/plain"].startswith("preflight · ")  # the console view, for plain front ends
            assert data["text/markdown"].startswith("### preflight · ")
        for fragment in shown:
            assert 'id="findings"' in fragment and 'id="footprint"' in fragment
            assert "<svg" in fragment
    assert 'id="curve"' in result_displays(notebook.cells[1])[0]  # the peak-vs-batch chart


def test_no_errors_no_terminal_report_and_no_tensorflow_logs_in_the_cells(executed):
    notebook, _ = executed
    for index, cell in enumerate(notebook.cells):
        assert not [o for o in cell.outputs if o["output_type"] == "error"], (index, cell.outputs)
        if index == 0:
            continue  # the notebook's own TensorFlow import may log
        streams = "".join(o.get("text", "") for o in cell.outputs if o["output_type"] == "stream")
        assert "oneDNN" not in streams and "Peak" not in streams and "batch" not in streams, (index, streams)


def test_over_budget_weights_are_a_does_not_fit_result_with_the_floor(executed):
    notebook, _ = executed
    (fragment,) = result_displays(notebook.cells[2])
    assert "Does not fit" in fragment
    assert "floor-over-budget" in fragment


def test_interrupt_ends_the_child_and_the_next_check_works(executed):
    notebook, alive = executed
    printed = "".join(o.get("text", "") for o in notebook.cells[INTERRUPTED_CELL].outputs
                      if o["output_type"] == "stream")
    assert "interrupted; children left: 0" in printed
    (progress,) = displays(notebook.cells[INTERRUPTED_CELL])  # the live display, left saying why it stopped
    assert progress["text/plain"].startswith("preflight: interrupted")
    assert alive
