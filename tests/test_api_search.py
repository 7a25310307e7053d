"""The notebook entry points for keras-tuner: preflight.check_search, then preflight.guard with its Report."""
from __future__ import annotations

import numpy as np
import pytest

import preflight

kt = pytest.importorskip("keras_tuner")
keras = pytest.importorskip("keras")


def build_model(hp):
    inputs = keras.Input((32,))
    x = inputs
    for i in range(hp.Int("layers", 1, 3)):
        x = keras.layers.Dense(hp.Int(f"units_{i}", 16, 2048, step=16), activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    model.compile("adam", "mse")
    return model


@pytest.mark.slow  # a whole keras-tuner search
def test_check_search_then_guarded_search(tmp_path):
    x = np.random.rand(64, 32).astype("float32")
    y = np.random.rand(64, 1).astype("float32")
    tuner = kt.RandomSearch(build_model, objective="val_loss", max_trials=4, seed=3,
                            directory=str(tmp_path), project_name="api")
    plan = preflight.check_search(tuner, (x, y), batch_size=16, budget="24MiB", n_measure=2, n_samples=40)
    search = plan.document["search"]
    assert {"layers", "units_0", "units_2"} <= {hp["name"] for hp in search["hyperparameters"]}
    assert plan.fits is False and search["worst_case"]["values"]["layers"] == 3
    assert 0 < search["fits_fraction"] < 1
    assert "Does not fit" in plan._repr_html_()  # the notebook display

    guard = preflight.guard(tuner, predictor=plan)
    tuner.search(x, y, epochs=1, batch_size=16, validation_split=0.25, verbose=0)
    record = guard.to_dict()
    assert len(tuner.oracle.trials) == 4
    assert all(t.status == "COMPLETED" for t in tuner.oracle.trials.values())
    assert all(trial["fits"] for trial in record["trials"])


SEARCH_FILE = '''
import numpy as np
import keras

def build_model(hp):
    inputs = keras.Input((32,))
    x = inputs
    for i in range(hp.Int("layers", 1, 3)):
        x = keras.layers.Dense(hp.Int(f"units_{i}", 16, 2048, step=16), activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    model.compile("adam", "mse")
    return model

def get_dataset():
    return np.random.rand(64, 32).astype("float32"), np.random.rand(64, 1).astype("float32")

batch_size = 16
'''


def test_a_notebook_search_check_gives_the_document_the_cli_gives(tmp_path, capsys):
    """One assembly for both ways in (issue 22): the backend and the launch checks are in check_search's
    document too, not added by the CLI alone. One dry run each."""
    import json

    from preflight.cli import main

    search_file = tmp_path / "tune.py"
    search_file.write_text(SEARCH_FILE)
    out = tmp_path / "search.json"
    main([str(search_file), "--budget", "1GiB", "--configs", "1", "--samples", "10", "--json", str(out),
          "--html", "none", "--quiet"])
    capsys.readouterr()
    from_cli = json.loads(out.read_text())
    x, y = np.random.rand(64, 32).astype("float32"), np.random.rand(64, 1).astype("float32")
    in_notebook = preflight.check_search(build_model, (x, y), batch_size=16, budget="1GiB", n_measure=1,
                                         n_samples=10).document
    assert set(from_cli) == set(in_notebook)  # the gate too: assembled the same way (analysis.assemble)
    assert in_notebook["backend"]["name"] == from_cli["backend"]["name"] == keras.backend.backend()
    assert in_notebook["launch"].keys() == from_cli["launch"].keys()
