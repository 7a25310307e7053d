"""Search-space enumeration, worst case, sampling and building, on real keras-tuner hypermodels."""
from __future__ import annotations

import keras
import keras_tuner as kt
import pytest

from preflight.tuner.features import static_features
from preflight.tuner.predict import FeatureCache, PeakPredictor, worst_case_values
from preflight.tuner.space import (
    build_and_values,
    build_with_values,
    enumerate_space,
    find_hypermodel,
    load_hypermodel_from_module,
    sample_values,
)


def build_loop_model(hp):
    """A num_layers loop (units_i appear only when the loop runs that far) and a conditional branch."""
    inputs = keras.Input((8,))
    x = inputs
    for i in range(hp.Int("num_layers", 1, 4)):
        x = keras.layers.Dense(hp.Int(f"units_{i}", 8, 64, step=8), activation=hp.Choice("act", ["relu", "tanh"]))(x)
    if hp.Boolean("extra"):
        with hp.conditional_scope("extra", [True]):
            x = keras.layers.Dense(hp.Int("extra_units", 4, 32, step=4))(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    model.compile(optimizer=hp.Choice("optimizer", ["sgd", "adam"]), loss="mse")
    return model


class BranchyHyperModel(kt.HyperModel):
    """A Choice that opens its own hps, and a batch_size hp registered in fit."""

    def build(self, hp):
        inputs = keras.Input((8,))
        if hp.Choice("kind", ["narrow", "wide"]) == "wide":
            with hp.conditional_scope("kind", ["wide"]):
                x = keras.layers.Dense(hp.Int("wide_units", 64, 128, step=64))(inputs)
        else:
            x = keras.layers.Dense(4)(inputs)
        model = keras.Model(inputs, keras.layers.Dense(1)(x))
        model.compile("adam", "mse")
        return model

    def fit(self, hp, model, *args, **kwargs):
        return model.fit(*args, batch_size=hp.Choice("batch_size", [16, 64]), **kwargs)


def test_num_layers_loop_and_conditional_hps_are_all_enumerated():
    space = {info.name: info for info in enumerate_space(build_loop_model)}
    assert {"num_layers", "units_0", "units_1", "units_2", "units_3", "act", "extra", "extra_units",
            "optimizer"} == set(space)
    assert space["units_3"].type == "Int" and (space["units_3"].min_value, space["units_3"].max_value) == (8, 64)
    assert space["extra_units"].conditions == ({"name": "extra", "values": [True]},)
    assert space["act"].values == ("relu", "tanh")


def test_choice_branches_and_fit_hps_are_enumerated():
    space = {info.name: info for info in enumerate_space(BranchyHyperModel())}
    assert {"kind", "wide_units", "batch_size"} <= set(space)
    assert space["batch_size"].values == (16, 64)


def test_worst_case_is_the_largest_configuration():
    space = enumerate_space(build_loop_model)
    worst = worst_case_values(space, build_loop_model, batch_size=32)
    assert worst["num_layers"] == 4
    assert all(worst[f"units_{i}"] == 64 for i in range(4))
    assert worst["extra"] is True and worst["extra_units"] == 32
    assert worst["optimizer"] == "adam"  # two slots per weight beat SGD's none
    # no sampled configuration is predicted bigger than the worst case
    cache = FeatureCache(build_loop_model)
    prior = PeakPredictor.prior()
    worst_peak = prior.predict_raw(cache.get(worst)[0], 32)
    for values in sample_values(space, 25, seed=3):
        assert prior.predict_raw(cache.get(values)[0], 32) <= worst_peak


def test_worst_case_takes_batch_size_hp_at_max():
    hypermodel = BranchyHyperModel()
    worst = worst_case_values(enumerate_space(hypermodel), hypermodel, batch_size=32)
    assert worst["kind"] == "wide" and worst["wide_units"] == 128 and worst["batch_size"] == 64


def test_build_with_values_drops_stale_inactive_keys():
    values = {"num_layers": 2, "units_0": 16, "units_1": 24, "units_2": 64, "units_3": 64, "act": "relu",
              "extra": False, "extra_units": 32, "optimizer": "adam"}
    model, active = build_and_values(build_loop_model, values)
    assert "units_2" not in active and "units_3" not in active and "extra_units" not in active
    assert [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)] == [16, 24, 3]
    model = build_with_values(build_loop_model, values)
    assert model.count_params() == (8 * 16 + 16) + (16 * 24 + 24) + (24 * 3 + 3)


def test_shapes_only_build_gives_the_same_features_as_a_real_build():
    values = {"num_layers": 3, "units_0": 64, "units_1": 32, "units_2": 8, "act": "tanh", "extra": True,
              "extra_units": 12, "optimizer": "adam"}
    real = static_features(build_and_values(build_loop_model, values)[0])
    shapes_only = static_features(build_and_values(build_loop_model, values, allocate=False)[0])
    assert real == shapes_only
    assert real.param_bytes == 4 * build_with_values(build_loop_model, values).count_params()


def test_sample_values_is_seeded_and_in_range():
    space = enumerate_space(build_loop_model)
    first, again = sample_values(space, 10, seed=7), sample_values(space, 10, seed=7)
    assert first == again
    assert all(1 <= v["num_layers"] <= 4 and v["units_0"] % 8 == 0 and 8 <= v["units_0"] <= 64 for v in first)
    assert len({repr(sorted(v.items())) for v in first}) > 1


def test_load_hypermodel_from_module_prefers_tuner_and_does_not_search(tmp_path):
    tuner = kt.RandomSearch(build_loop_model, objective="val_loss", max_trials=1, directory=str(tmp_path))
    namespace = {"__name__": "tune", "build_model": build_loop_model, "tuner": tuner, "x": 1}
    assert find_hypermodel(namespace) == ("tuner", tuner)
    assert load_hypermodel_from_module(namespace) is tuner
    assert len(tuner.oracle.trials) == 0
    assert find_hypermodel({"__name__": "tune", "build_model": build_loop_model}) == \
        ("build_model", build_loop_model)
    hypermodel = BranchyHyperModel()
    assert find_hypermodel({"__name__": "tune", "hm": hypermodel, "helper": len}) == ("hm", hypermodel)

    def build(hp):  # any one-argument function whose argument is `hp`, defined in the file itself
        return None

    build.__module__ = "tune"
    assert find_hypermodel({"__name__": "tune", "make": build}) == ("make", build)
    assert load_hypermodel_from_module({"__name__": "tune", "x": 3}) is None


def test_enumerating_a_tuner_uses_its_hypermodel(tmp_path):
    tuner = kt.RandomSearch(build_loop_model, objective="val_loss", max_trials=1, directory=str(tmp_path))
    assert {i.name for i in enumerate_space(tuner)} == {i.name for i in enumerate_space(build_loop_model)}


@pytest.mark.slow
def test_hyper_resnet_enumerates_and_its_worst_case_builds():
    hypermodel = kt.applications.HyperResNet(input_shape=(32, 32, 3), classes=10)
    space = {info.name: info for info in enumerate_space(hypermodel)}
    assert {"version", "conv3_depth", "conv4_depth", "pooling", "optimizer", "learning_rate"} <= set(space)
    assert space["conv4_depth"].values == (6, 23, 36)
    worst = worst_case_values(list(space.values()), hypermodel, batch_size=32)
    assert worst["conv4_depth"] == 36 and worst["conv3_depth"] == 8
    assert worst["optimizer"] in ("adam", "rmsprop") and worst["optimizer"] == "adam"
    model = build_with_values(hypermodel, worst)  # a real build, weights allocated
    smallest = build_with_values(hypermodel, dict(worst, conv4_depth=6, conv3_depth=4))
    assert model.count_params() > smallest.count_params() > 0


def test_importing_the_tuner_package_imports_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys, preflight.tuner, preflight.tuner.space, preflight.tuner.predict, preflight.tuner.guard, "
            "preflight.tuner.plan, preflight.tuner.budget, preflight.tuner.measure, preflight.tuner.cli_support; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'keras_tuner') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
