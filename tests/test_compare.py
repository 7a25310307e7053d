"""`python -m preflight compare`: the comparison document (by hand, no TF), its three renderers, the exit
codes, the backend list, one real TensorFlow report read into a row, and the command end to end."""
from __future__ import annotations

import copy
import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from preflight import errors
from preflight.analysis.comparison import backend_row, build_comparison, error_row
from preflight.cli import main
from preflight.cli.compare import backends_to_compare, comparison_exit_code
from preflight.engine.backends import installed_backends
from preflight.render.comparison import (comparison_view, render_comparison_html, render_comparison_markdown,
                                         render_comparison_text)

REPO = Path(__file__).resolve().parent.parent
MODELS = Path(__file__).parent / "models"
MiB = 2**20
HOSTILE = "</script><script>alert(1)</script>"


def report(backend: str, *, peak: int | None, budget: int | None, fits: bool | None, status: str = "ok",
           message: str = "", upper: int | None = None, batch: int = 8) -> dict:
    """The keys of a report document that a comparison row reads, as preflight.analysis.document writes them."""
    return {
        "model": {"name": "small_cnn"}, "batch_size": batch, "budget_bytes": budget, "fits": fits,
        "peak_bytes": peak, "peak_upper_bytes": upper if upper is not None else peak,
        "probes": [{"batch_size": batch, "status": status, "peak_bytes": peak if status == "ok" else None,
                    "step_seconds": 0.004 if status == "ok" else None, "message": message}],
        "device": {"name": "CPU:0", "allocator": "BFC"},
        "backend": {"name": backend, "method": f"{backend} allocator peak", "version": "1.0"},
    }


def compare(results: dict, chosen: str = "tensorflow", budget: int | None = 100 * MiB) -> dict:
    return build_comparison(results, chosen_backend=chosen, model_name="small_cnn", batch_size=8,
                            budget_bytes=budget)


def rows_by_backend(comparison: dict) -> dict:
    return {row["backend"]: row for row in comparison["rows"]}


# --- the comparison document --------------------------------------------------------------------------


def test_a_row_per_backend_with_its_status_peak_step_and_method():
    comparison = compare({
        "tensorflow": report("tensorflow", peak=150 * MiB, budget=100 * MiB, fits=False),
        "jax": report("jax", peak=60 * MiB, budget=100 * MiB, fits=True),
        "torch": "build_model() raised NameError under torch",
    })
    assert comparison["kind"] == "backend-comparison"
    assert (comparison["model"], comparison["batch_size"], comparison["budget_bytes"]) == ("small_cnn", 8, 100 * MiB)
    assert [row["backend"] for row in comparison["rows"]] == ["tensorflow", "jax", "torch"]
    rows = rows_by_backend(comparison)
    assert rows["tensorflow"]["chosen"] and not rows["jax"]["chosen"]
    assert (rows["tensorflow"]["status"], rows["tensorflow"]["peak_bytes"]) == ("does-not-fit", 150 * MiB)
    assert (rows["jax"]["status"], rows["jax"]["peak_bytes"], rows["jax"]["step_seconds"]) == ("fits", 60 * MiB, 0.004)
    assert (rows["jax"]["method"], rows["jax"]["version"]) == ("jax allocator peak", "1.0")
    assert rows["torch"] == error_row("torch", "build_model() raised NameError under torch")
    assert set(rows["torch"]) == set(rows["jax"])


def test_switch_backend_is_recommended_when_the_chosen_backend_does_not_fit_and_another_does():
    comparison = compare({
        "tensorflow": report("tensorflow", peak=150 * MiB, budget=100 * MiB, fits=False),
        "jax": report("jax", peak=90 * MiB, budget=100 * MiB, fits=True),
        "torch": report("torch", peak=70 * MiB, budget=100 * MiB, fits=True),
    })
    recommendations = comparison["recommendations"]
    assert [r["backend"] for r in recommendations] == ["torch", "jax"]  # the smallest peak first
    first = recommendations[0]
    assert first["kind"] == "switch-backend" and first["measured"] is True and first["fits"] is True
    assert (first["peak_bytes"], first["chosen_backend"], first["chosen_peak_bytes"]) == \
        (70 * MiB, "tensorflow", 150 * MiB)
    assert first["saving_bytes"] == 80 * MiB
    assert "KERAS_BACKEND=torch" in first["snippet"]


@pytest.mark.parametrize("chosen_report, other_report", [
    (dict(peak=60 * MiB, fits=True), dict(peak=50 * MiB, fits=True)),          # the chosen one fits
    (dict(peak=150 * MiB, fits=False), dict(peak=120 * MiB, fits=False)),     # nothing fits
], ids=["chosen-fits", "none-fits"])
def test_no_switch_backend_otherwise(chosen_report, other_report):
    comparison = compare({"tensorflow": report("tensorflow", budget=100 * MiB, **chosen_report),
                          "jax": report("jax", budget=100 * MiB, **other_report)})
    assert comparison["recommendations"] == []


def test_no_switch_backend_when_the_chosen_backend_failed_or_there_is_no_budget():
    failed = compare({"tensorflow": "the model failed", "jax": report("jax", peak=50 * MiB, budget=100 * MiB, fits=True)})
    assert failed["recommendations"] == []
    unbudgeted = compare({"tensorflow": report("tensorflow", peak=150 * MiB, budget=None, fits=None),
                          "jax": report("jax", peak=50 * MiB, budget=None, fits=None)}, budget=None)
    assert [row["status"] for row in unbudgeted["rows"]] == ["measured", "measured"]
    assert unbudgeted["recommendations"] == []


def test_out_of_memory_at_the_planned_batch_does_not_fit_and_has_no_peak():
    row = backend_row("jax", report("jax", peak=None, budget=100 * MiB, fits=False, status="oom",
                                    message="RESOURCE_EXHAUSTED: out of memory"))
    assert (row["status"], row["peak_bytes"], row["step_seconds"]) == ("does-not-fit", None, None)
    assert "RESOURCE_EXHAUSTED" in row["message"]


def test_a_peak_under_the_budget_that_does_not_fit_with_its_margin_says_so():
    row = backend_row("tensorflow", report("tensorflow", peak=95 * MiB, upper=105 * MiB, budget=100 * MiB,
                                           fits=False))
    assert row["status"] == "does-not-fit"
    assert "105.0 MiB" in row["message"]


def test_a_crashed_probe_is_an_error_row_with_the_probes_message():
    row = backend_row("torch", report("torch", peak=None, budget=100 * MiB, fits=None, status="crashed",
                                      message="the child died: signal 11"))
    assert (row["status"], row["peak_bytes"], row["message"]) == ("error", None, "the child died: signal 11")


def test_the_installed_version_fills_a_row_whose_report_has_none():
    comparison = build_comparison({"torch": "failed"}, chosen_backend="torch", model_name="m", batch_size=8,
                                  budget_bytes=None, versions={"torch": "2.13.0"})
    assert comparison["rows"][0]["version"] == "2.13.0"


# --- exit codes and the backend list ------------------------------------------------------------------


@pytest.mark.parametrize("chosen, failures, expected", [
    (report("tensorflow", peak=60 * MiB, budget=100 * MiB, fits=True), {}, errors.EXIT_OK),
    (report("tensorflow", peak=60 * MiB, budget=None, fits=None), {}, errors.EXIT_OK),
    (report("tensorflow", peak=150 * MiB, budget=100 * MiB, fits=False), {}, errors.EXIT_GATE_FAILED),
    (report("tensorflow", peak=None, budget=100 * MiB, fits=None, status="timeout"), {}, errors.EXIT_GATE_FAILED),
    ("build_model() raised", {"tensorflow": errors.EXIT_USER_CODE}, errors.EXIT_USER_CODE),
], ids=["fits", "no-budget", "does-not-fit", "nothing-measured", "model-failed"])
def test_the_chosen_backend_decides_the_exit_code(chosen, failures, expected):
    budget = chosen["budget_bytes"] if isinstance(chosen, dict) else 100 * MiB
    comparison = compare({"tensorflow": chosen, "jax": "another backend's failure does not count"}, budget=budget)
    assert comparison_exit_code(comparison, {**failures, "jax": errors.EXIT_USER_CODE}) == expected


def test_the_chosen_backend_comes_first_and_is_added_when_left_out():
    assert backends_to_compare("tensorflow,jax", "jax") == ["jax", "tensorflow"]
    assert backends_to_compare("jax, tf ,jax", "tensorflow") == ["tensorflow", "jax"]
    assert backends_to_compare(None, "tensorflow") == installed_backends()


@pytest.mark.parametrize("listed", ["tensorflow,mxnet", "", " , "])
def test_an_unknown_or_empty_backend_list_is_a_usage_error(listed):
    with pytest.raises(errors.UsageError) as caught:
        backends_to_compare(listed, "tensorflow")
    assert caught.value.exit_code == errors.EXIT_USAGE


def test_cli_unknown_backend_is_exit_2_before_anything_runs(tmp_path, capsys):
    argv = ["compare", str(MODELS / "cnn.py"), "--backends", "tensorflow,mxnet", "--budget", "1GiB",
            "--json", str(tmp_path / "c.json"), "--html", str(tmp_path / "c.html")]
    assert main(argv) == errors.EXIT_USAGE
    assert "unknown Keras backend 'mxnet'" in capsys.readouterr().err
    assert not (tmp_path / "c.json").exists()
    assert main(["compare", str(MODELS / "cnn.py"), "--backend", "theano"]) == errors.EXIT_USAGE
    assert main(["compare"]) == errors.EXIT_USAGE  # no model file


# --- renderers ----------------------------------------------------------------------------------------


@pytest.fixture()
def comparison() -> dict:
    return compare({
        "tensorflow": report("tensorflow", peak=150 * MiB, budget=100 * MiB, fits=False),
        "jax": report("jax", peak=60 * MiB, budget=100 * MiB, fits=True),
        "torch": "build_model() raised NameError under torch",
    })


def hostile(comparison: dict) -> dict:
    doc = copy.deepcopy(comparison)
    doc["model"] = HOSTILE
    doc["rows"][0]["method"] = HOSTILE
    doc["rows"][1]["device"] = HOSTILE
    doc["rows"][2]["message"] = HOSTILE
    return doc


def test_terminal_shows_each_backend_its_peak_and_the_switch(comparison):
    text = render_comparison_text(comparison)
    assert "Does not fit under tensorflow; fits under jax" in text
    assert re.search(r"tensorflow \(chosen\)\s+1\.0\s+does not fit\s+150\.0 MiB\s+150%\s+4\.0 ms", text), text
    assert re.search(r"jax\s+1\.0\s+fits\s+60\.0 MiB\s+60%", text), text
    assert "build_model() raised NameError under torch" in text
    assert "Switch to the jax backend: peak 60.0 MiB against 150.0 MiB under tensorflow" in text
    assert all(len(line) <= 100 for line in text.splitlines())


def test_terminal_prints_markup_in_user_text_as_itself(comparison):
    doc = hostile(comparison)
    doc["rows"][2]["message"] = "[bold]not markup[/bold]"
    text = render_comparison_text(doc)
    assert HOSTILE in text and "[bold]not markup[/bold]" in text


def test_markdown_is_a_table_row_per_backend_with_user_text_escaped(comparison):
    markdown = render_comparison_markdown(comparison)
    assert "| **tensorflow (chosen)** | 1.0 | ❌ does not fit | 150.0 MiB | 150% |" in markdown
    assert "| jax | 1.0 | ✅ fits | 60.0 MiB |" in markdown
    assert "`KERAS_BACKEND=jax python train.py`" in markdown
    escaped = render_comparison_markdown(hostile(comparison))
    assert "<script>" not in escaped and "&lt;script&gt;alert(1)&lt;/script&gt;" in escaped


DATA_TAG = re.compile(r'<script type="application/json" id="preflight-data">(.*?)</script>', re.S)


def test_html_escapes_the_model_name_and_embeds_the_document(comparison):
    doc = hostile(comparison)
    page = render_comparison_html(doc)
    assert HOSTILE not in page and "<script>alert" not in page
    assert html.escape(HOSTILE) in page
    assert page.count("<script") == 1
    assert json.loads(DATA_TAG.search(page).group(1)) == doc
    assert 'class="verdict does-not-fit"' in page and "Switch to the jax backend" in page


def test_html_loads_nothing_from_the_network(comparison):
    page = render_comparison_html(comparison)
    assert not re.findall(r"""(?:src|href|action)\s*=""", page, flags=re.I)
    assert "@import" not in page and "<link" not in page
    assert not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//", page, flags=re.I)


def test_view_states_without_a_budget_and_with_a_failed_chosen_backend():
    measured = compare({"tensorflow": report("tensorflow", peak=10 * MiB, budget=None, fits=None)}, budget=None)
    assert comparison_view(measured)["header_class"] == "no-budget"
    assert "no budget" in render_comparison_text(measured)
    failed = compare({"tensorflow": "build_model() raised"})
    view = comparison_view(failed)
    assert (view["header_class"], view["headline"]) == ("unknown", "The check failed under tensorflow")
    assert "The check failed under tensorflow" in render_comparison_html(failed)


# --- real TensorFlow ------------------------------------------------------------------------------------


def test_a_real_tensorflow_report_becomes_a_measured_row():
    from preflight.api import check

    document = check(str(MODELS / "cnn.py"), batch_size=8, budget="1GiB", whatif=False,
                     probe_batch_sizes=[8], progress=False).document
    row = backend_row("tensorflow", document)
    assert row["status"] == "fits"
    assert row["peak_bytes"] == document["peak_bytes"] > 0
    assert row["step_seconds"] > 0
    assert row["version"] and row["method"] and row["device"]


needs_tensorflow_and_jax = pytest.mark.skipif(not {"tensorflow", "jax"} <= set(installed_backends()),
                                              reason="needs both tensorflow and jax installed")


@needs_tensorflow_and_jax
def test_compare_end_to_end_under_tensorflow_and_jax(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("KERAS_BACKEND", None)
    done = subprocess.run(
        [sys.executable, "-m", "preflight", "compare", str(MODELS / "cnn.py"), "--backends", "tensorflow,jax",
         "--backend", "tensorflow", "--budget", "1GiB", "--batch-size", "8", "--markdown", "compare.md", "--quiet"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == errors.EXIT_OK, done.stderr
    comparison = json.loads((tmp_path / "preflight-compare.json").read_text(encoding="utf-8"))
    rows = rows_by_backend(comparison)
    assert set(rows) == {"tensorflow", "jax"} and rows["tensorflow"]["chosen"]
    for row in rows.values():
        assert row["status"] == "fits", row
        assert row["peak_bytes"] > 0 and row["step_seconds"] > 0 and row["method"]
    assert (tmp_path / "preflight-compare.html").is_file() and (tmp_path / "compare.md").is_file()


def test_render_re_renders_a_saved_comparison(comparison, tmp_path):
    saved = tmp_path / "preflight-compare.json"
    saved.write_text(json.dumps(comparison), encoding="utf-8")
    assert main(["render", str(saved), "--markdown", str(tmp_path / "c.md")]) == errors.EXIT_OK
    assert (tmp_path / "preflight-compare.html").read_text(encoding="utf-8") == render_comparison_html(comparison)
    assert (tmp_path / "c.md").read_text(encoding="utf-8") == render_comparison_markdown(comparison)
    del comparison["rows"]
    saved.write_text(json.dumps(comparison), encoding="utf-8")
    assert main(["render", str(saved)]) == errors.EXIT_USAGE


@needs_tensorflow_and_jax
def test_a_model_that_fails_under_the_chosen_backend_is_exit_3_and_the_others_are_still_measured(tmp_path):
    argv = ["compare", str(MODELS / "tf_op_layer.py"), "--backends", "tensorflow,jax", "--backend", "jax",
            "--budget", "1GiB", "--batch-size", "8", "--json", str(tmp_path / "c.json"), "--html", "none", "--quiet"]
    assert main(argv) == errors.EXIT_USER_CODE
    rows = rows_by_backend(json.loads((tmp_path / "c.json").read_text(encoding="utf-8")))
    assert [row["backend"] for row in rows.values()] == ["jax", "tensorflow"]
    assert rows["jax"]["status"] == "error" and "calls TensorFlow directly" in rows["jax"]["message"]
    assert rows["tensorflow"]["status"] == "fits" and rows["tensorflow"]["peak_bytes"] > 0
