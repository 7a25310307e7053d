"""The search space of a keras-tuner hypermodel, read without searching.

Owns: finding the hypermodel (a `build_model(hp)` function, a `kt.HyperModel`, or a tuner), enumerating
every hyperparameter including conditional ones, sampling configurations, and building the Keras model
of one configuration. The worst-case choice over Choices lives in `predict` (it needs model features).
"""
from __future__ import annotations

import inspect
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from preflight.engine.static_floor import shapes_only

HP_TYPES = ("Int", "Float", "Choice", "Boolean", "Fixed")
# Choice values tried one by one while enumerating, so hps that appear only under one value are found.
_MAX_ENUMERATION_BUILDS = 40


@dataclass(frozen=True)
class HyperparameterInfo:
    name: str
    type: str                        # one of HP_TYPES
    default: Any = None
    min_value: float | int | None = None
    max_value: float | int | None = None
    step: float | int | None = None
    sampling: str | None = None      # "linear" | "log" | "reverse_log" for Int/Float
    values: tuple = ()               # Choice values; (False, True) for Boolean; (value,) for Fixed
    conditions: tuple = ()           # ({"name": parent, "values": [...]}, ...)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["values"] = list(self.values)
        data["conditions"] = [dict(c) for c in self.conditions]
        if self.type in ("Int", "Float"):
            data["range"] = [self.min_value, self.max_value]  # what the report's table shows
        return data

    @property
    def max_grid_value(self) -> Any:
        """The largest value the search can pick (Ints land on their step grid)."""
        if self.type == "Int":
            if self.step and (self.sampling in (None, "linear")):
                span = (self.max_value - self.min_value) // self.step
                return int(self.min_value + span * self.step)
            return int(self.max_value)
        if self.type == "Float":
            return self.max_value
        if self.type == "Boolean":
            return True
        if self.type == "Fixed":
            return self.values[0]
        return max(self.values) if _all_numeric(self.values) else self.default


def _all_numeric(values: tuple) -> bool:
    return bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _info_from_kt(hp_obj: Any) -> HyperparameterInfo:
    kind = type(hp_obj).__name__
    conditions = tuple(
        {"name": c.name, "values": list(c.values)} for c in getattr(hp_obj, "conditions", [])
    )
    if kind in ("Int", "Float"):
        return HyperparameterInfo(
            name=hp_obj.name, type=kind, default=hp_obj.default, min_value=hp_obj.min_value,
            max_value=hp_obj.max_value, step=hp_obj.step, sampling=hp_obj.sampling, conditions=conditions,
        )
    if kind == "Boolean":
        return HyperparameterInfo(name=hp_obj.name, type=kind, default=hp_obj.default,
                                  values=(False, True), conditions=conditions)
    if kind == "Fixed":
        return HyperparameterInfo(name=hp_obj.name, type=kind, default=hp_obj.value,
                                  values=(hp_obj.value,), conditions=conditions)
    return HyperparameterInfo(name=hp_obj.name, type="Choice", default=hp_obj.default,
                              values=tuple(hp_obj.values), conditions=conditions)


# ---------------------------------------------------------------- finding the hypermodel
@dataclass
class _FunctionHyperModel:
    """Adapts a bare `build_model(hp)` to the HyperModel interface we use (build, fit)."""

    build_fn: Callable[[Any], Any]
    name: str = field(default="build_model")

    def build(self, hp: Any) -> Any:
        return self.build_fn(hp)

    def fit(self, hp: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
        return model.fit(*args, **kwargs)


def as_hypermodel(hypermodel_or_tuner: Any) -> Any:
    """A `build_model(hp)` function, a `kt.HyperModel` or a tuner -> an object with `.build(hp)`."""
    tuner_hypermodel = getattr(hypermodel_or_tuner, "hypermodel", None)
    if tuner_hypermodel is not None and hasattr(hypermodel_or_tuner, "oracle"):
        hypermodel_or_tuner = tuner_hypermodel
    if hasattr(hypermodel_or_tuner, "build") and callable(hypermodel_or_tuner.build):
        return hypermodel_or_tuner
    if callable(hypermodel_or_tuner):
        return _FunctionHyperModel(hypermodel_or_tuner, getattr(hypermodel_or_tuner, "__name__", "build_model"))
    from preflight.errors import TargetLoadError

    raise TargetLoadError(
        f"{type(hypermodel_or_tuner).__name__} is not a hypermodel",
        hint="pass a build_model(hp) function, a keras_tuner.HyperModel or a tuner",
    )


def _is_tuner(obj: Any) -> bool:
    return hasattr(obj, "oracle") and hasattr(obj, "hypermodel") and hasattr(obj, "search")


def _is_hypermodel_instance(obj: Any) -> bool:
    try:
        import keras_tuner as kt
    except ImportError:
        return False
    return isinstance(obj, kt.HyperModel) and not isinstance(obj, type)


def _is_build_function(obj: Any) -> bool:
    if not inspect.isfunction(obj):
        return False
    try:
        params = [p for p in inspect.signature(obj).parameters.values()
                  if p.default is inspect.Parameter.empty
                  and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return False
    return len(params) == 1


def load_hypermodel_from_module(namespace: dict[str, Any]) -> Any | None:
    """What a file defines to search (a tuner, a HyperModel or `build_model(hp)`), or None."""
    found = find_hypermodel(namespace)
    return None if found is None else found[1]


def find_hypermodel(namespace: dict[str, Any]) -> tuple[str, Any] | None:
    """Find, by convention, what a file defines to search: a tuner, a HyperModel, or `build_model(hp)`.

    Returns (name, object) or None. Preference: a tuner (it carries the search settings), then a
    HyperModel instance, then a function named `build_model`, then any other one-argument function
    whose argument is called `hp`. Nothing is called here: a tuner found is not searched.
    """
    public = {k: v for k, v in namespace.items() if not k.startswith("_")}
    for predicate in (_is_tuner, _is_hypermodel_instance):
        for name, obj in public.items():
            if predicate(obj):
                return name, obj
    build = public.get("build_model")
    if build is not None and _is_build_function(build):
        return "build_model", build
    for name, obj in public.items():
        if _is_build_function(obj) and getattr(obj, "__module__", None) == namespace.get("__name__"):
            first = next(iter(inspect.signature(obj).parameters))
            if first == "hp":
                return name, obj
    return None


# ---------------------------------------------------------------- enumeration
def _new_hp(values: dict[str, Any] | None = None) -> Any:
    import keras_tuner as kt

    return kt.HyperParameters.from_config({"space": [], "values": dict(values or {})})


def _record_fit_hps(hypermodel: Any, hp: Any) -> None:
    """Let a HyperModel.fit override register its hps (e.g. batch_size) without training anything."""
    fit = getattr(type(hypermodel), "fit", None)
    try:
        import keras_tuner as kt
    except ImportError:  # pragma: no cover - keras-tuner is a dependency
        return
    if fit is None or fit is kt.HyperModel.fit or isinstance(hypermodel, _FunctionHyperModel):
        return

    class _NoTrainingModel:
        """Stands in for the model: records the fit call and trains nothing."""

        def fit(self, *args: Any, **kwargs: Any) -> None:
            return None

        def __getattr__(self, name: str) -> Any:
            raise AttributeError(name)

    try:
        hypermodel.fit(hp, _NoTrainingModel(), None, None)
    except Exception:  # noqa: BLE001 - the user's fit may need real data; what it registered stays
        pass


def _build_and_collect(hypermodel: Any, preset: dict[str, Any]) -> tuple[Any, Any]:
    """Build once with `preset` values; returns (hp, model). Clears the Keras session first."""
    import keras

    keras.backend.clear_session(free_memory=False)
    hp = _new_hp(preset)
    with shapes_only():
        model = hypermodel.build(hp)
    _record_fit_hps(hypermodel, hp)
    return hp, model


def _extreme_preset(infos: dict[str, HyperparameterInfo]) -> dict[str, Any]:
    """Ints at max and Booleans on: the values that open every loop and every conditional branch."""
    preset: dict[str, Any] = {}
    for info in infos.values():
        if info.type in ("Int", "Boolean"):
            preset[info.name] = info.max_grid_value
    return preset


def enumerate_space(hypermodel_or_tuner: Any) -> list[HyperparameterInfo]:
    """Every hyperparameter the hypermodel can register, conditional ones included, in first-seen order.

    Builds with the defaults, then again with Ints at their maximum and Booleans True until no new
    hyperparameter appears (a `num_layers` loop registers `units_i` only when it runs that far), then
    once per value of each Choice (a branch on a Choice registers its own hps).
    """
    hypermodel = as_hypermodel(hypermodel_or_tuner)
    infos: dict[str, HyperparameterInfo] = {}

    def absorb(hp: Any) -> int:
        new = 0
        for h in hp.space:
            if h.name not in infos:
                infos[h.name] = _info_from_kt(h)
                new += 1
        return new

    builds = 0
    hp, _ = _build_and_collect(hypermodel, {})
    builds += 1
    absorb(hp)
    while builds < _MAX_ENUMERATION_BUILDS:
        hp, _ = _build_and_collect(hypermodel, _extreme_preset(infos))
        builds += 1
        if absorb(hp) == 0:
            break
    tried_choices: set[tuple[str, Any]] = set()
    grew = True
    while grew and builds < _MAX_ENUMERATION_BUILDS:
        grew = False
        for info in list(infos.values()):
            if info.type != "Choice":
                continue
            for value in info.values:
                if (info.name, repr(value)) in tried_choices or value == info.default:
                    continue
                if builds >= _MAX_ENUMERATION_BUILDS:
                    break
                tried_choices.add((info.name, repr(value)))
                preset = _extreme_preset(infos)
                preset[info.name] = value
                hp, _ = _build_and_collect(hypermodel, preset)
                builds += 1
                grew = absorb(hp) > 0 or grew
    import keras

    keras.backend.clear_session()
    return list(infos.values())


# ---------------------------------------------------------------- values
def _last(info: HyperparameterInfo) -> Any:
    """A standalone keras-tuner hp object for `info` (unconditional: activity is decided by the build)."""
    from keras_tuner.src.engine.hyperparameters import hp_types

    config: dict[str, Any] = {"name": info.name, "default": info.default, "conditions": []}
    if info.type in ("Int", "Float"):
        config.update(min_value=info.min_value, max_value=info.max_value, step=info.step,
                      sampling=info.sampling or "linear")
        if info.type == "Int" and info.step is None:
            config["step"] = 1
    elif info.type == "Choice":
        config.update(values=list(info.values), ordered=_all_numeric(info.values))
    elif info.type == "Fixed":
        config = {"name": info.name, "value": info.values[0], "conditions": []}
    elif info.type == "Boolean":
        config = {"name": info.name, "default": bool(info.default), "conditions": []}
    return hp_types.deserialize({"class_name": info.type, "config": config})


def sample_values(space: list[HyperparameterInfo], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n` random configurations (values for every hp; inactive ones are dropped when built)."""
    rng = random.Random(seed)
    samplers = [(info, _last(info)) for info in space]
    configs = []
    for _ in range(n):
        values = {}
        for info, kt_hp in samplers:
            values[info.name] = info.values[0] if info.type == "Fixed" else kt_hp.prob_to_value(rng.random())
        configs.append(values)
    return configs


def active_values(hp: Any) -> dict[str, Any]:
    """The values of the hps this build actually registered and that are active (stale keys dropped)."""
    registered = {h.name for h in hp.space if hp.is_active(h)}
    return {name: value for name, value in hp.values.items() if name in registered}


def build_with_values(hypermodel_or_tuner: Any, values: dict[str, Any], *, clear: bool = True) -> Any:
    """Build the Keras model of one configuration (no training). Returns the model.

    Values for hps this build does not register (e.g. `units_3` when `num_layers` is 2) are ignored;
    `build_and_values` also returns the active values.
    """
    return build_and_values(hypermodel_or_tuner, values, clear=clear)[0]


def build_and_values(hypermodel_or_tuner: Any, values: dict[str, Any], *, clear: bool = True,
                     allocate: bool = True) -> tuple[Any, dict[str, Any]]:
    """(model, active values) for one configuration.

    With `allocate=False` the weights get shapes but no memory (Keras defers their initialization
    inside a StatelessScope): what static features need, at a fraction of the time and RAM. Such a
    model cannot be trained; call `keras.backend.clear_session()` when done with it.
    """
    import keras

    hypermodel = as_hypermodel(hypermodel_or_tuner)
    if clear:
        # before the scope: clear_session also drops an active scope. Shapes-only builds hold no
        # weight memory, so they skip its gc.collect (seconds over hundreds of builds).
        keras.backend.clear_session(free_memory=allocate)
    hp = _new_hp({k: v for k, v in values.items() if not k.startswith("tuner/")})
    if allocate:
        model = hypermodel.build(hp)
    else:
        with shapes_only():
            model = hypermodel.build(hp)
    _record_fit_hps(hypermodel, hp)
    return model, active_values(hp)
