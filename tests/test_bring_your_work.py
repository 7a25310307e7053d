"""Issue 23: the work as the user has it. A Colab-style notebook with shell lines, magics and a top-level
fit(...) with a checkpoint; a script that trains at import; a saved .keras/.h5 file (made here, in tmp_path).
The fit call is the plan: its model, data, batch, epochs and callbacks are measured and sized, nothing is
trained. Real TensorFlow on tiny models; the largest-batch search is off (--max-batch-time 0)."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from preflight.cli import main
from preflight.engine import notebook_source
from preflight.engine.launch import file_facts
from preflight.engine.program import read_program
from preflight.errors import TargetLoadError

MODELS = Path(__file__).parent / "models"
NOTEBOOK = MODELS / "colab_fit.ipynb"
FAST = ["--max-batch-time", "0", "--steps", "1", "--html", "none"]


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def findings(document: dict) -> dict[str, str]:
    return {f["id"]: f["message"] for f in document["findings"]}


# ---- reading a notebook, without TensorFlow ---------------------------------------------------------------

def test_a_notebook_reads_as_its_code_cells_with_magics_skipped_and_listed():
    program = read_program(NOTEBOOK)
    assert program.skipped == ("code cell 1, line 1: !nvidia-smi", "code cell 1, line 2: !pip install -q keras-tuner",
                               "code cell 1, line 3: %matplotlib inline", "code cell 3, line 3: files = !ls",
                               "code cell 6: %%bash cell")
    assert "get_ipython().system('pip install -q keras-tuner')" in program.text  # IPython's own transformer
    assert "model.summary()" in program.text and "%%capture" not in program.text  # a %%capture cell's body runs
    fit_line = program.text.splitlines().index(next(line for line in program.text.splitlines() if "model.fit(" in line))
    assert program.where(fit_line + 1) == "colab_fit.ipynb, code cell 7, line 1"
    assert file_facts(NOTEBOOK)["fit"] | {"line": 0} == {"batch_size": 16, "epochs": 30, "line": 0}


def test_without_ipython_the_fallback_drops_shell_lines_and_magics(monkeypatch):
    monkeypatch.setattr(notebook_source, "_transformer", lambda: None)
    text = read_program(NOTEBOOK).text
    assert "get_ipython" not in text and "!pip" not in text and "%matplotlib" not in text
    compile(text, "colab_fit.ipynb", "exec")  # `pass` keeps every block valid


@pytest.mark.parametrize("content, cause", [
    ("{not json", "is not a notebook: it is not JSON"),
    ('{"worksheets": []}', "older notebook format (nbformat 3)"),
])
def test_a_file_that_is_not_a_notebook_is_refused_with_the_fix(tmp_path, content, cause):
    path = tmp_path / "broken.ipynb"
    path.write_text(content)
    with pytest.raises(TargetLoadError, match=cause.replace("(", r"\(").replace(")", r"\)")):
        read_program(path)


# ---- the fit(...) call is the plan -------------------------------------------------------------------------

def test_notebook_fit_call_is_measured_with_its_runtime_and_checkpoint(tmp_path, monkeypatch):
    import preflight

    monkeypatch.chdir(tmp_path)  # ModelCheckpoint("best.keras") lands here
    report = preflight.check(str(NOTEBOOK), budget="1GiB", probe_batch_sizes=[16], max_batch_time=0, steps=1,
                             progress=False)
    document = report.document
    assert report.fits is True and document["peak_bytes"] > 0 and document["batch_size"] == 16
    call = document["launch"]["plan"]["call"]
    assert call["where"] == "colab_fit.ipynb, code cell 7, line 1"
    assert (call["batch_size"], call["epochs"], call["samples"]) == (16, 30, 256)  # validation_split=0.2 of 320
    assert document["launch"]["plan"]["steps_per_epoch"] == 16
    assert document["launch"]["plan"]["checkpoint"]["kept"] == 1  # save_best_only=True
    found = findings(document)
    assert "x 16 steps per epoch (256 training samples / batch 16) x 30 epochs (fit() at colab_fit.ipynb, " \
           "code cell 7, line 1)" in found["run-time"]
    assert "x 1 kept, ModelCheckpoint('best.keras', save_best_only=True)) in ." in found["checkpoint-disk"]
    assert "!pip install -q keras-tuner" in found["notebook-skipped"]
    assert "fit() at colab_fit.ipynb, code cell 7, line 1: batch 16, 30 epochs" in repr(report)
    assert not (tmp_path / "best.keras").exists()  # nothing was trained


def test_script_that_fits_at_import_is_checked_against_its_own_epochs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out = run_cli([MODELS / "fit_at_import.py", "--budget", "1GiB", "--time-limit", "1s",
                         "--json", tmp_path / "r.json", *FAST], capsys)
    assert code == 1, out  # 200 epochs do not fit in 1 s: the gate fails, the memory verdict stands
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["fits"] is True and document["batch_size"] == 32
    found = findings(document)
    assert "x 16 steps per epoch (512 training samples / batch 32) x 200 epochs (fit() at fit_at_import.py, " \
           "line 14)" in found["time-over-limit"]
    assert "BackupAndRestore('backup') lets the next session resume" in found["time-over-limit"]
    assert "x 200 kept, ModelCheckpoint('ckpt/model-{epoch:03d}.keras')) in ckpt" in found["checkpoint-disk"]
    assert "Plan: fit() at fit_at_import.py, line 14: batch 32, 200 epochs" in out.replace("\n", " ")
    assert "Traceback" not in out and not (tmp_path / "ckpt").exists()


def test_a_notebook_cell_that_fails_is_named(tmp_path, capsys):
    cells = [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": source}
             for source in ("!pip install nothing\nimport keras", "x = 1\nundefined_name + x")]
    path = tmp_path / "broken.ipynb"
    path.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}))
    code, err = run_cli([path, "--json", "none", "--quiet", *FAST], capsys)
    assert code == 3 and "Traceback" not in err
    assert "broken.ipynb failed while loading: NameError: name 'undefined_name' is not defined " \
           "(broken.ipynb, code cell 2, line 2)" in err and "fix:" in err


# ---- saved models --------------------------------------------------------------------------------------------

CUSTOM_LAYER = '''
import keras


class Scale(keras.layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}
'''


@pytest.fixture
def saved(tmp_path):
    """model.keras and model.h5 (compiled, with a custom layer), uncompiled.keras, data.npz, layers.py."""
    import sys

    import keras
    import numpy as np

    (tmp_path / "layers.py").write_text(textwrap.dedent(CUSTOM_LAYER))
    sys.path.insert(0, str(tmp_path))
    try:
        from layers import Scale
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("layers", None)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), Scale(),
                              keras.layers.Dense(3)], name="saved_mlp")
    model.save(tmp_path / "uncompiled.keras")
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.save(tmp_path / "model.keras")
    model.save(tmp_path / "model.h5")
    x, y = np.random.rand(64, 8).astype("float32"), np.random.randint(0, 3, 64)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    return tmp_path, (x, y)


def test_saved_keras_model_with_custom_objects_and_data_is_measured(saved, capsys):
    folder, _ = saved
    code, out = run_cli([folder / "model.keras", "--custom-objects", folder / "layers.py", "--data",
                         folder / "data.npz", "--budget", "1GiB", "--batch-size", "8", "--json", folder / "r.json",
                         *FAST], capsys)
    assert code == 0, out
    document = json.loads((folder / "r.json").read_text())
    assert document["fits"] is True and document["peak_bytes"] > 0 and document["data"]["kind"] == "numpy"
    assert document["model"]["name"] == "saved_mlp"


def test_saved_h5_model_from_check_with_arrays(saved):
    import preflight

    folder, (x, y) = saved
    report = preflight.check(str(folder / "model.h5"), (x, y), custom_objects=str(folder / "layers.py"),
                             budget="1GiB", probe_batch_sizes=[8], max_batch_time=0, steps=1, progress=False)
    assert report.fits is True and report.peak_bytes > 0


@pytest.mark.parametrize("name, flags, expected_code, cause", [
    ("uncompiled.keras", ["--custom-objects", "layers.py"], 3, "holds model 'saved_mlp' saved without compile()"),
    ("model.keras", [], 3, "it uses Scale, which Keras cannot find by name"),
    ("model.keras", ["--data", "layers.py"], 2, "layers.py is not an .npz file"),
])
def test_a_saved_model_that_cannot_train_says_how_to_fix_it(saved, capsys, monkeypatch, name, flags,
                                                           expected_code, cause):
    folder, _ = saved
    monkeypatch.chdir(folder)
    code, err = run_cli([name, *flags, "--json", "none", "--quiet", *FAST], capsys)
    assert code == expected_code, err
    assert cause in err and "fix:" in err and "Traceback" not in err
    if "compile()" in cause:
        assert "model.compile(optimizer='adam', loss=" in err and "model.save('uncompiled.keras')" in err


def test_a_savedmodel_folder_is_refused_at_the_door(tmp_path, capsys):
    (tmp_path / "exported").mkdir()
    (tmp_path / "exported" / "saved_model.pb").write_bytes(b"")
    code, err = run_cli([tmp_path / "exported", "--json", "none", *FAST], capsys)
    assert code == 2 and "is a TensorFlow SavedModel folder" in err and "model.save('model.keras')" in err
