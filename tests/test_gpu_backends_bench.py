"""The GPU backends benchmark's pure parts (case plan, cap, reading preflight's report and the capped run,
agreement, table) and its plumbing on this machine: no GPU needed."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import gpu_backends as bench
from benchmarks import zoo

REPO = Path(__file__).resolve().parent.parent
MIB = 2**20
SAMPLE_REPORT = Path(__file__).parent / "data" / "sample_report.json"

JAX_OOM = ("jax.errors.JaxRuntimeError: RESOURCE_EXHAUSTED: Out of memory while trying to allocate "
           "532676608 bytes.")
TORCH_OOM = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 576.00 MiB. GPU 0 has a total "
             "capacity of 139.81 GiB of which 135.2 GiB is free. Of the allocated memory 2.41 GiB is allocated "
             "by PyTorch, and 8.12 MiB is reserved by PyTorch but unallocated.")


def test_plan_puts_every_model_and_backend_at_the_middle_budget_first():
    cases = bench.plan_cases({"unet": (64, ("512MiB", "1GiB", "2GiB")), "transformer": (128, ("256MiB", "768MiB", "1GiB"))},
                             ("jax", "torch"))
    assert len(cases) == 2 * 3 * 2
    first_round = cases[:4]
    assert [(c.model, c.backend) for c in first_round] == [("unet", "jax"), ("unet", "torch"),
                                                          ("transformer", "jax"), ("transformer", "torch")]
    assert [c.budget_bytes for c in first_round] == [1024 * MIB, 1024 * MIB, 768 * MIB, 768 * MIB]
    assert [c.budget_bytes for c in cases[4:8]] == [512 * MIB, 512 * MIB, 256 * MIB, 256 * MIB]
    assert cases[0].key == "unet/bs64/1024MiB/jax"
    assert len({c.key for c in cases}) == len(cases)


def test_default_plan_covers_four_zoo_models_three_budgets_two_backends():
    cases = bench.plan_cases(bench.CASES, bench.BACKENDS)
    assert len(bench.CASES) >= 4 and len(cases) == len(bench.CASES) * 3 * 2
    assert all(model in zoo.MODELS for model in bench.CASES)
    for _, budgets in bench.CASES.values():
        sizes = [bench.parse_size(b) for b in budgets]
        assert sizes == sorted(sizes) and len(set(sizes)) == 3


def test_cap_is_the_budget_as_a_fraction_of_the_card():
    total = 143771 * MIB  # an H200 as nvidia-smi reports it
    assert bench.memory_fraction(1024 * MIB, total) == pytest.approx(1024 / 143771)
    assert bench.memory_fraction(200 * 2**30, total) == 1.0
    assert bench.memory_fraction(1024 * MIB, None) is None


def test_summary_reads_a_real_report():
    document = json.loads(SAMPLE_REPORT.read_text(encoding="utf-8"))
    summary = bench.preflight_summary(document, 0)
    assert summary["status"] == "measured"
    assert summary["fits"] is True
    assert summary["peak_bytes"] == document["peak_bytes"] > 0
    assert (summary["recommended_batch_size"], summary["max_batch_size"]) == (1024, 1497)
    assert summary["probes"] and all(p["status"] for p in summary["probes"])
    assert summary["backend"] is None  # a report from before backends were recorded


def test_summary_without_a_report_keeps_the_reason():
    summary = bench.preflight_summary(None, 2, "usage: ...\npython -m preflight: error: unrecognized arguments")
    assert summary["status"] == "error" and summary["fits"] is None
    assert "unrecognized arguments" in summary["message"]


@pytest.mark.parametrize("stderr", [JAX_OOM, TORCH_OOM])
def test_a_run_that_died_of_out_of_memory_is_oom(stderr):
    assert bench.truth_from_process(1, "", "Traceback (most recent call last):\n" + stderr)["status"] == "oom"


def test_the_runs_own_line_wins_over_allocator_warnings():
    stdout = 'Epoch 1\n{"status": "ok", "peak_bytes": 846000000, "limit_bytes": 1073741824}\n'
    stderr = "W external/xla/...: Allocator (GPU_0_bfc) ran out of memory trying to allocate 2.1GiB. " \
             "Out of memory while trying to allocate; the caller indicates that this is not a failure"
    result = bench.truth_from_process(0, stdout, stderr)
    assert result["status"] == "ok" and result["peak_bytes"] == 846000000


def test_other_deaths_and_timeouts_are_not_oom():
    assert bench.truth_from_process(1, "", "ModuleNotFoundError: No module named 'keras'")["status"] == "error"
    assert bench.truth_from_process(None, "", "")["status"] == "timeout"


@pytest.mark.parametrize("fits, run, expected", [
    (True, "oom", "unsafe"), (False, "ok", "cautious"), (True, "ok", "agree"), (False, "oom", "agree"),
    (True, "ran", "uncapped"), (None, "ok", "n/a"), (True, "error", "n/a"), (False, None, "n/a"),
])
def test_agreement(fits, run, expected):
    assert bench.agreement(fits, run) == expected


def test_table_puts_the_cpu_figure_beside_the_gpu_one_only_at_the_same_batch():
    results = [
        {"case": {"model": "unet", "batch_size": 64, "budget_bytes": 512 * MIB, "backend": "jax"},
         "preflight": {"status": "measured", "fits": True, "peak_bytes": 400 * MIB, "recommended_batch_size": 64,
                       "max_batch_size": 80},
         "truth": {"status": "oom"}, "agreement": "unsafe"},
        {"case": {"model": "xception", "batch_size": 16, "budget_bytes": 1024 * MIB, "backend": "torch"},
         "preflight": {"status": "timeout", "fits": None}, "agreement": "n/a"},
    ]
    cpu = {"models": {"unet": {"batch_size": 64, "preflight_peak_bytes": 330 * MIB, "truth_peak_bytes": 310 * MIB},
                      "xception": {"batch_size": 32, "preflight_peak_bytes": 900 * MIB}}}
    rows = bench.table_rows(results, cpu)
    assert rows[0] == ["unet", "64", "512", "jax", "fits", "400", "64/80", "oom", "-", "-", "unsafe", "330", "310"]
    assert rows[1][4] == "timeout" and rows[1][-2:] == ["-", "-"]
    text = bench.format_table(rows)
    lines = text.splitlines()
    assert len(lines) == 4 and lines[0].startswith("model") and set(lines[1]) <= {"-", " "}
    assert lines[2].index("unsafe") == lines[0].index("agreement")


def test_a_session_past_its_time_budget_starts_nothing_and_says_what_was_left(tmp_path):
    cases = bench.plan_cases({"transformer": (16, ("512MiB", "768MiB", "1GiB"))}, ("jax",))
    out = tmp_path / "gpu_backends.json"
    session = bench.Session(cases, out, {"format": bench.FORMAT, "gpu": {}}, time_budget_s=0, grace_s=0,
                            check_recommended=False)
    session.run(jobs=2)
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["cases"] == []
    assert written["not_started"] == [case.key for case in cases]


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="the JAX backend is not installed")
def test_the_capped_run_trains_a_small_model_under_jax_on_this_machine(tmp_path):
    model_file = tmp_path / "tiny.py"
    model_file.write_text(
        "import numpy as np\nimport keras\n\n\ndef build_model():\n"
        "    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation='softmax')])\n"
        "    model.compile(optimizer='adam', loss='sparse_categorical_crossentropy')\n    return model\n\n\n"
        "def get_dataset():\n    rng = np.random.default_rng(0)\n"
        "    return rng.random((32, 8), dtype=np.float32), rng.integers(0, 4, size=(32,)).astype('int32')\n",
        encoding="utf-8")
    completed = subprocess.run([sys.executable, "-m", "benchmarks.capped_fit", str(model_file), "4",
                                "--backend", "jax", "--memory-fraction", "0.01"],
                               cwd=REPO, capture_output=True, text=True, timeout=300)
    result = bench.truth_from_process(completed.returncode, completed.stdout, completed.stderr)
    on_gpu = result.get("device", "").startswith("gpu")
    assert result["status"] == ("ok" if on_gpu else "ran"), completed.stderr[-2000:]
    assert result["capped"] is on_gpu


def test_the_extra_zoo_models_have_matching_data():
    for name in ("xception", "wide_cnn"):
        x, y = zoo.make_data(name, 3)
        assert x.shape == (3, zoo.IMAGE_SIZE_LARGE, zoo.IMAGE_SIZE_LARGE, 3) and y.shape == (3,)
    assert set(zoo.EXTRA_ZOO).isdisjoint(zoo.ZOO)


def test_a_run_past_its_time_is_stopped_and_reads_as_timeout():
    started = time.monotonic()
    returncode, stdout, stderr = bench.run_bounded([sys.executable, "-c", "import time; time.sleep(60)"], {}, 1)
    assert returncode is None and time.monotonic() - started < 15
    assert bench.truth_from_process(returncode, stdout, stderr)["status"] == "timeout"
