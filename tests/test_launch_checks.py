"""Launch checks (issue 10): each fixture in tests/models/launch_*.py triggers its finding, from the CLI and
from preflight.check, and launch_clean.py triggers none. Real TensorFlow in child processes, tiny models.

Not testable on this CPU-only machine: a TPU and several GPUs. The TPU path is driven by a TPU address in
the environment (loopback, 127.0.0.1, which nothing connects to); several GPUs by the check's record.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import preflight
from preflight.analysis.checks import CheckContext, accelerator_unused, gpu_memory_settings as gpu_check, rebuild_ram_growth
from preflight.engine.launch import checkpoints_kept, file_facts, gpu_memory_settings
from preflight.engine.versions import installed_versions, version_problems

MODELS = Path(__file__).parent / "models"
FAKE_TPU = {"COLAB_TPU_ADDR": "127.0.0.1:8470"}
LAUNCH_IDS = {"accelerator-unused", "xla-incompatible", "xla-unchecked", "gpu-preallocates", "time-over-limit",
              "time-unknown", "checkpoints-over-disk", "rebuild-ram-growth", "rebuild-ram-leak", "rebuilds-skipped",
              "versions-two-tensorflows"}

# fixture file, environment, check() keywords, the finding ids it must raise
CASES = {
    "no-strategy-tpu": ("launch_no_strategy.py", {**FAKE_TPU}, {"target": "t4"},
                        {"accelerator-unused", "gpu-preallocates"}),
    "versions": ("launch_no_strategy.py", {"FAKE_DIST": "tensorflow_cpu-2.21.0"}, {},
                 {"versions-two-tensorflows"}),
    "py-function": ("launch_py_function.py", {}, {}, {"xla-incompatible"}),
    "long-fit": ("launch_long_fit.py", {}, {"time_limit": "colab"}, {"time-over-limit", "checkpoints-over-disk"}),
    "rebuild-leak": ("launch_rebuild_leak.py", {}, {"rebuilds": 6}, {"rebuild-ram-leak"}),
    "rebuild-growth": ("launch_rebuild_growth.py", {}, {"rebuilds": 6}, {"rebuild-ram-growth"}),
    # Everything at once, all clean: a TPU address (and a strategy), a GPU target (and memory growth), a
    # time limit (and a short fit), rebuilds (and clear_session in build_model).
    "clean": ("launch_clean.py", {**FAKE_TPU}, {"target": "t4", "time_limit": "colab", "rebuilds": 6}, set()),
}


def _fake_distribution(folder: Path, name_version: str) -> None:
    """A second TensorFlow build's metadata, as pip leaves it (importlib.metadata finds it on the path)."""
    info = folder / f"{name_version}.dist-info"
    info.mkdir(parents=True)
    name, version = name_version.split("-")
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n")


def _environment(env: dict, folder: Path) -> dict:
    env = dict(env)
    fake = env.pop("FAKE_DIST", None)
    if fake:
        _fake_distribution(folder, fake)
        env["PYTHONPATH"] = os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])
    return env


def _flags(options: dict) -> list[str]:
    return [part for key, value in options.items() for part in (f"--{key.replace('_', '-')}", str(value))]


@pytest.fixture(scope="module")
def cli_reports(tmp_path_factory) -> dict:
    """Each case once through `python -m preflight` (a fresh process: the environment is the user's)."""
    reports = {}
    for case, (model_file, env, options, _) in CASES.items():
        folder = tmp_path_factory.mktemp(case)
        report = folder / "report.json"
        completed = subprocess.run(
            [sys.executable, "-m", "preflight", str(MODELS / model_file), "--json", str(report), "--html", "none",
             "--quiet", *_flags(options)],
            env={**os.environ, **_environment(env, folder)}, cwd=folder, capture_output=True, text=True, timeout=300)
        assert report.is_file(), completed.stderr
        reports[case] = (completed.returncode, json.loads(report.read_text()))
    return reports


# The cases whose findings come from the environment: through check() it is this process's, not a fresh one's.
# (The CLI calls check() too, so the keywords' paths are the CLI cases'; tests/test_assembly.py checks that
# the two doors assemble the same document.)
API_CASES = ("no-strategy-tpu", "versions", "clean")


@pytest.fixture(scope="module")
def api_reports(tmp_path_factory) -> dict:
    """Each environment case once through preflight.check(path, ...), the environment set in this process."""
    reports = {}
    for case in API_CASES:
        model_file, env, options, _ = CASES[case]
        folder = tmp_path_factory.mktemp(case + "-api")
        env = _environment(env, folder)
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        sys.path.insert(0, str(folder))  # where importlib.metadata looks, as PYTHONPATH does for the CLI
        try:
            reports[case] = preflight.check(str(MODELS / model_file), progress=False, probe_batch_sizes=[16],
                                            steps=2, **options).document
        finally:
            sys.path.remove(str(folder))
            for key, value in saved.items():
                os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    return reports


def _ids(document: dict) -> set[str]:
    return {finding["id"] for finding in document["findings"]}


@pytest.mark.parametrize("case", CASES)
def test_cli_raises_the_cases_findings_and_no_others(cli_reports, case):
    code, document = cli_reports[case]
    expected = CASES[case][3]
    assert _ids(document) & LAUNCH_IDS == expected
    gated = expected & {"time-over-limit", "checkpoints-over-disk"}
    assert code == (1 if gated else 0)


@pytest.mark.parametrize("case", API_CASES)
def test_check_raises_the_cases_findings_and_no_others(api_reports, case):
    assert _ids(api_reports[case]) & LAUNCH_IDS == CASES[case][3]


@pytest.mark.parametrize("model_file, expected", [("launch_tuner_no_strategy.py", {"accelerator-unused"}),
                                                  ("launch_tuner_strategy.py", set())])
def test_a_search_files_tuner_without_distribution_strategy(tmp_path, model_file, expected):
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "preflight", str(MODELS / model_file), "--json", str(report),
                    "--html", "none", "--quiet", "--configs", "1", "--samples", "5"],
                   env={**os.environ, **FAKE_TPU}, cwd=tmp_path, capture_output=True, timeout=300)
    document = json.loads(report.read_text())
    assert _ids(document) & LAUNCH_IDS == expected
    assert document["readiness"]["distribution"]["strategy"] == ("OneDeviceStrategy" if not expected else None)


def _finding(document: dict, finding_id: str) -> str:
    return next(f["message"] for f in document["findings"] if f["id"] == finding_id)


def test_findings_name_cause_numbers_and_fix(cli_reports):
    tpu = _finding(cli_reports["no-strategy-tpu"][1], "accelerator-unused")
    assert "COLAB_TPU_ADDR=127.0.0.1:8470" in tpu and "2 per core" in tpu and "TPUStrategy(resolver)" in tpu
    xla = _finding(cli_reports["py-function"][1], "xla-incompatible")
    assert "EagerPyFunc" in xla and "'numpy_scale'" in xla and "jit_compile=False" in xla
    document = cli_reports["long-fit"][1]
    planned = next(p for p in document["probes"] if p["batch_size"] == 16)
    hours = (planned["step_seconds"] * 1000 * 1_000_000 + planned["warmup_seconds"]) / 3600
    assert f"about {hours:.1f} h" in _finding(document, "time-over-limit")
    disk = _finding(document, "checkpoints-over-disk")
    assert "x 1,000,000 kept" in disk and "save_best_only=True" in disk
    leak = _finding(cli_reports["rebuild-leak"][1], "rebuild-ram-leak")
    assert "even with keras.backend.clear_session()" in leak
    assert "gc.collect() before each build_model()" in _finding(cli_reports["rebuild-growth"][1], "rebuild-ram-growth")


MIB = 2**20


def _rebuild_finding(as_written: list[int], cleared: list[int]):
    rebuilds = {"count": len(as_written), "rss_as_written": as_written, "rss_cleared": cleared}
    return rebuild_ram_growth(CheckContext({"readiness": {"rebuilds": rebuilds}}, None))


def test_rebuild_growth_counts_builds_that_grew_before_a_collection_freed_them():
    flat = [500 * MIB] * 6
    lingering = [500 * MIB + step * MIB for step in (0, 0, 4, 8, 12, 11)]  # three builds grew, then gc ran
    finding = _rebuild_finding(lingering, flat)
    assert finding.id == "rebuild-ram-growth" and "4.0 MiB per build_model() call over 3 of 6" in finding.message
    assert _rebuild_finding([500 * MIB + step * MIB for step in (0, 4, 3, 7, 6, 10)], flat) is None  # never 3 in a row
    leaking = [500 * MIB + step * 4 * MIB for step in range(6)]
    assert _rebuild_finding(lingering, leaking).id == "rebuild-ram-leak"
    # a leak whose last build dipped by less than a build leaks (measured: 811, 815, 819, 823, 830, 829 MiB)
    dipping = [m * MIB for m in (811, 815, 819, 823, 830, 829)]
    assert _rebuild_finding(dipping, dipping).id == "rebuild-ram-leak"
    freed = [m * MIB for m in (811, 815, 819, 823, 830, 800)]   # a collection at the end freed them
    assert _rebuild_finding(flat, freed) is None
    # a dip of just over 1 MiB after 4 MiB builds is noise, not a collection (measured: ..., 455.9, 462.0, 461.0)
    noisy = [int(m * MIB) for m in (443.6, 447.7, 451.8, 455.9, 462.0, 460.9)]
    assert _rebuild_finding(noisy, noisy).id == "rebuild-ram-leak"
    collected = [m * MIB for m in (811, 815, 819, 827, 835, 829)]  # freed 6 MiB: more than a build added (5.3)
    assert _rebuild_finding(flat, collected) is None


def test_clean_fixture_records_its_strategy_and_per_replica_batch(cli_reports, api_reports):
    for document in (cli_reports["clean"][1], api_reports["clean"]):
        assert document["readiness"]["distribution"]["strategy"] == "MirroredStrategy"
        assert document["readiness"]["xla"]["status"] == "ok"
        assert document["per_replica_batch_size"] == document["batch_size"] // document["replicas"]
        assert "distributed-batch" in _ids(document)
        plan = document["launch"]["plan"]
        assert (plan["epochs"], plan["steps_per_epoch"], plan["checkpoint"]["kept"]) == (2, 4, 1)


def test_a_notebook_model_built_under_a_strategy_carries_it_to_the_child():
    import keras
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4), keras.layers.Dense(1)])
        model.compile(optimizer="adam", loss="mse")
    document = preflight.check(model, batch_size=8, probe_batch_sizes=[8], steps=1, progress=False).document
    assert document["readiness"]["distribution"]["strategy"] == "MirroredStrategy"
    assert "accelerator-unused" not in _ids(document)


# --- The logic behind what this machine cannot have (no TF needed) ---

def _context(distribution: dict, batch_size: int = 64, device: str = "CPU", target: str | None = None,
             gpu_memory: dict | None = None) -> CheckContext:
    document = {"batch_size": batch_size, "readiness": {"distribution": distribution}, "device": {"kind": device},
                "target": {"kind": target} if target else None, "launch": {"gpu_memory": gpu_memory}}
    return CheckContext(document, None)


def test_several_gpus_without_a_strategy_say_the_per_gpu_batch():
    finding = accelerator_unused(_context({"strategy": None, "replicas": 1, "gpus": 4}))
    assert finding.severity == "warning" and "4 GPUs" in finding.message and "16 per GPU" in finding.message
    assert "MirroredStrategy()" in finding.message
    assert accelerator_unused(_context({"strategy": "MirroredStrategy", "replicas": 4, "gpus": 4})) is None
    assert accelerator_unused(_context({"strategy": None, "replicas": 1, "gpus": 1})) is None


def test_gpu_memory_growth_from_the_environment_or_the_allocator(tmp_path):
    facts = file_facts(MODELS / "launch_clean.py")
    assert facts["memory_growth"] is True
    plain = file_facts(MODELS / "launch_no_strategy.py")
    for environ, grows in (({}, False), ({"TF_FORCE_GPU_ALLOW_GROWTH": "true"}, True),
                           ({"TF_GPU_ALLOCATOR": "cuda_malloc_async"}, True)):
        settings = gpu_memory_settings(plain, environ)
        assert settings["grows"] is grows
        ids = {f.id for f in gpu_check(_context({}, device="GPU", gpu_memory=settings))}
        assert ids == (set() if grows else {"gpu-preallocates"})
    shared = {"grows": True, "other_processes": [{"pid": 4242, "used_bytes": 3 * 2**30}]}
    [finding] = gpu_check(_context({}, device="GPU", gpu_memory=shared))
    assert finding.id == "gpu-shared" and "3.0 GiB" in finding.message and "4242" in finding.message
    assert gpu_check(_context({}, device="CPU", gpu_memory=gpu_memory_settings(plain, {}))) == []


def test_version_rules():
    base = {"tensorflow": "2.21.0", "keras": "3.15.1", "keras-tuner": "1.4.8", "tensorboard": "2.21.0",
            "tensorflow-cpu": None, "tensorflow-gpu": None, "tf-keras": None}

    def ids(uses_tuner=True, environ=None, **changes):
        versions = {**base, **{k.replace("_", "-"): v for k, v in changes.items()}}
        return {p["id"] for p in version_problems(versions, uses_tuner, environ or {})}

    assert ids() == set()
    assert ids(tensorboard=None) == {"versions-tuner-without-tensorboard"}
    assert ids(uses_tuner=False, tensorboard=None) == set()
    assert ids(keras="2.15.0") == {"versions-keras-2"}
    assert ids(keras_tuner="1.3.5") == {"versions-tuner-too-old"}
    assert ids(environ={"TF_USE_LEGACY_KERAS": "1"}) == {"versions-legacy-keras-missing"}
    assert ids(tf_keras="2.15.1") == {"versions-tf-keras-mismatch"}
    assert ids(tf_keras="2.21.0", environ={"TF_USE_LEGACY_KERAS": "1"}) == set()
    assert ids(tensorflow_cpu="2.21.0") == {"versions-two-tensorflows"}
    assert version_problems(installed_versions(), True, {}) == []  # this environment is a good one


def test_the_old_kerastuner_import_name(tmp_path):
    from preflight.analysis.checks import version_problems as version_check
    from preflight.engine.launch import launch_section

    tune = tmp_path / "tune.py"
    tune.write_text("import kerastuner as kt\n")
    launch = launch_section(str(tune), {})
    [finding] = version_check(CheckContext({"launch": launch}, None))
    assert finding.id == "versions-kerastuner-name" and "import keras_tuner as kt" in finding.message


def test_fit_call_and_checkpoints_read_from_the_source():
    facts = file_facts(MODELS / "launch_long_fit.py")
    assert facts["fit"] == {"epochs": 1_000_000, "steps_per_epoch": 1000, "line": 20}  # the line the report names
    assert facts["checkpoint"]["filepath"] == "ckpt/epoch{epoch:06d}.keras"
    assert checkpoints_kept(facts["checkpoint"], 10) == 10
    assert checkpoints_kept({"filepath": "best.keras", "save_best_only": False}, 10) == 1
    assert checkpoints_kept({"filepath": "e{epoch}.keras", "save_best_only": True}, 10) == 1
