"""Issue 23 item 4: an input axis of no fixed size besides the batch (a sequence length) is named in the
report and measured like the batch: --seq-len / seq_len= plans it, the child steps the planned batch at other
lengths, the report has a peak-vs-length curve and the longest length that fits. Unit tests build the pieces
by hand (no TensorFlow); the integration tests run real TensorFlow on a tiny attention model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from preflight.analysis.lengths import length_section
from preflight.analysis.predict import PeakModel
from preflight.engine.plan import length_round
from preflight.common.measurements import DeviceInfo, ProbeOutcome, ProbeResult
from preflight.render.html import render_html
from preflight.render.markdown import render_markdown
from preflight.render.terminal import render_text

MODELS = Path(__file__).parent / "models"
MIB = 2**20


def ok(size: int, peak: int) -> ProbeResult:
    return ProbeResult(size, "ok", peak_bytes=peak, peak_bytes_runs=[peak], step_seconds=0.01)


# ---- pure pieces -------------------------------------------------------------------------------------------

def test_length_round_brackets_the_planned_length_and_stops_at_what_the_model_accepts():
    assert length_round(64) == [16, 32, 128, 256]
    assert length_round(64, max_length=128) == [16, 32, 128]
    assert length_round(1) == [2, 4]


def test_a_convex_curve_keeps_growing_with_the_square_past_the_longest_probe():
    # peak = 1 MiB + 100 * L**2: quadratic, as attention scores are
    probes = [ok(n, MIB + 100 * n * n) for n in (64, 128, 256)]
    linear, convex = PeakModel(probes, min_run_margin=0.0), PeakModel(probes, min_run_margin=0.0, convex=True)
    truth = MIB + 100 * 1024 ** 2
    assert linear.predict_peak(1024).peak_bytes < truth  # a straight line promises too much room
    assert convex.predict_peak(1024).peak_bytes >= truth
    assert "square" in convex.predict_peak(1024).method
    # the batch axis is unchanged: convex is off by default, and a flat or concave curve adds nothing
    assert PeakModel([ok(b, MIB + 10 * b) for b in (1, 2, 4)], convex=True).curvature == 0.0


def outcome_with_lengths(lengths: dict[int, int], planned: int = 64, max_length: int | None = None) -> ProbeOutcome:
    return ProbeOutcome(
        device=DeviceInfo("CPU", "cpu", "BFC", memory_limit_bytes=4096 * MIB),
        probes=[ok(8, lengths[planned])],
        dynamic_axes={"axes": [{"input": "tokens", "axes": [1], "shape": [None, None]}], "planned_length": planned,
                      "length_source": "--seq-len", "max_length": max_length},
        length_probes=[{"length": n, "probe": ok(8, peak)} for n, peak in lengths.items() if n != planned])


def test_the_length_section_gives_the_curve_and_the_longest_length_that_fits():
    peaks = {n: MIB + 100 * n * n for n in (16, 32, 64, 128, 256)}
    section = length_section(outcome_with_lengths(peaks), batch_size=8, budget=400 * MIB, min_run_margin=0.1)
    assert [p["length"] for p in section["probes"]] == [16, 32, 64, 128, 256]
    assert section["planned_length"] == 64 and section["batch_size"] == 8
    longest = section["max_length"]
    # 1 MiB + 100 L**2 (+10 %) <= 400 MiB: L <= about 1950; the convex bound stays on the safe side of it
    assert 1000 < longest < 1960 and section["max_length_source"] == "predicted"
    curve = {row["length"]: row for row in section["curve"]}
    assert curve[64]["source"] == "measured" and curve[longest]["peak_bytes"] <= 400 * MIB
    assert curve[longest + 1 if longest + 1 in curve else 2048]["peak_bytes"] > 400 * MIB


def test_the_longest_length_is_capped_by_what_the_model_accepts():
    peaks = {n: MIB + n for n in (16, 32, 64, 128)}
    section = length_section(outcome_with_lengths(peaks, max_length=128), batch_size=8, budget=400 * MIB,
                             min_run_margin=0.1)
    assert section["max_length"] == 128 and section["max_length_source"] == "measured"
    assert max(row["length"] for row in section["curve"]) == 128


def test_no_dynamic_axis_no_section():
    assert length_section(ProbeOutcome(probes=[ok(8, MIB)]), 8, None, 0.1) is None


def sample_document() -> dict:
    document = json.loads((Path(__file__).parent / "data" / "sample_report.json").read_text(encoding="utf-8"))
    peaks = {n: MIB + 100 * n * n for n in (16, 32, 64, 128, 256)}
    document["length_curve"] = length_section(outcome_with_lengths(peaks), 8, 400 * MIB, 0.1)
    document["length_curve"]["axes"][0]["input"] = "<script>alert(1)</script>"
    return document


def test_every_renderer_shows_the_length_curve_and_html_escapes_the_input_name():
    document = sample_document()
    longest = document["length_curve"]["max_length"]
    text, markdown, html = render_text(document), render_markdown(document), render_html(document)
    assert "Sequence length:" in text and f"longest that fits is {longest:,} (predicted)" in text
    assert "planned 64 (--seq-len)" in text and "16: " in text
    assert "**Sequence length**" in markdown and "| 256 |" in markdown
    assert 'id="length-curve"' in html and "sequence length" in html  # the chart's axis
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# ---- data at a length (Keras, no training) ------------------------------------------------------------------

def sequence_model():
    import keras

    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(50, 4)(tokens)
    model = keras.Model(tokens, keras.layers.Dense(5)(x))  # a label per token: (None, None, 5)
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


def test_synthesized_data_takes_the_planned_length_on_inputs_and_labels():
    from preflight.engine.data import dynamic_axes, make_pool

    model = sequence_model()
    assert dynamic_axes(model) == [{"input": "tokens", "axes": [1], "shape": [None, None]}]
    x, y, _ = make_pool(None, model, 4, length=48).unpacked(4)
    assert x.shape == (4, 48) and y.shape == (4, 48)
    assert make_pool(None, model, 4).unpacked(4)[0].shape == (4, 1)  # without a length: 1, as before


def test_real_data_is_cut_or_tiled_to_a_length_with_its_token_labels():
    from preflight.engine.data import make_pool

    model = sequence_model()
    x = np.arange(2 * 10).reshape(2, 10).astype("int32") % 50
    y = np.ones((2, 10), dtype="int32")
    short_x, short_y, _ = make_pool((x, y), model, 2, length=4).unpacked(2)
    assert short_x.tolist() == x[:, :4].tolist() and short_y.shape == (2, 4)
    long_x, long_y, _ = make_pool((x, y), model, 2, length=25).unpacked(2)
    assert long_x.shape == (2, 25) and long_y.shape == (2, 25) and long_x[0, 10] == x[0, 0]


# ---- real TensorFlow --------------------------------------------------------------------------------------

def test_a_sequence_model_is_measured_at_several_lengths_and_the_longest_fit_is_stepped(capsys):
    from preflight.cli import main

    code = main([str(MODELS / "sequence_attention.py"), "--seq-len", "32", "--budget", "256MiB", "--steps", "1",
                 "--max-batch-time", "0", "--html", "none", "--json", "none", "--no-whatif"])
    out = capsys.readouterr()
    assert code == 0, out.err
    printed = " ".join(out.out.split())  # rich wraps at the terminal's width
    assert "Sequence length: input 'tokens' axis 1; planned 32 (--seq-len); at batch 8 the longest that fits" in printed
    assert "peak by length: 8: " in printed


def test_the_length_curve_in_the_report_is_measured_by_real_steps():
    import preflight

    report = preflight.check(str(MODELS / "sequence_attention.py"), seq_len=32, budget="256MiB", steps=1,
                             progress=False, max_batch_time=0, whatif=False)
    section = report.document["length_curve"]
    peaks = {p["length"]: p["peak_bytes"] for p in section["probes"] if p["status"] == "ok"}
    assert {8, 16, 32, 64, 128} <= set(peaks)
    assert peaks[128] > peaks[64] > peaks[16]  # longer sequences hold more
    assert section["max_length"] and section["max_length"] > 128
    # the longest predicted to fit was stepped itself (a measured point past the round of lengths)
    assert max(peaks) > 128
    assert report.document["data"]["kind"] == "synthetic"


def test_without_seq_len_a_synthesized_dynamic_axis_is_named_and_the_fix_given():
    import preflight

    report = preflight.check(str(MODELS / "sequence_attention.py"), budget="256MiB", steps=1,
                             progress=False, max_batch_time=0, whatif=False)
    assert report.document["length_curve"]["planned_length"] == 1
    messages = {f["id"]: f["message"] for f in report.document["findings"]}
    assert "--seq-len" in messages["dynamic-axis-unset"] and "'tokens'" in messages["dynamic-axis-unset"]


def test_seq_len_on_a_model_without_a_dynamic_axis_says_it_changed_nothing():
    import keras

    import preflight

    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(4)])
    model.compile("sgd", "mse")
    report = preflight.check(model, seq_len=64, budget="256MiB", steps=1, progress=False, max_batch_time=0,
                             whatif=False, probe_batch_sizes=[8])
    assert "length_curve" not in report.document
    messages = {f["id"]: f["message"] for f in report.document["findings"]}
    assert "--seq-len 64 changed nothing" in messages["seq-len-unused"]


def test_a_one_hot_label_as_long_as_the_sequence_is_not_resized_for_a_per_sequence_output():
    import keras

    from preflight.engine.data import make_pool

    tokens = keras.Input(shape=(None,), dtype="int32")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(50, 4)(tokens))
    model = keras.Model(tokens, keras.layers.Dense(6, activation="softmax")(pooled))  # one label per sequence
    model.compile("sgd", "categorical_crossentropy")
    x = np.zeros((2, 6), "int32")
    y = np.eye(6, dtype="float32")[[0, 1]]  # 6 classes, as long as the sequence
    x_at, y_at, _ = make_pool((x, y), model, 2, length=12).unpacked(2)
    assert x_at.shape == (2, 12) and y_at.shape == (2, 6)


def test_a_planned_length_that_runs_out_of_memory_still_gets_the_longest_length_that_fits():
    import preflight

    report = preflight.check(str(MODELS / "sequence_attention.py"), seq_len=2048, budget="256MiB", steps=1,
                             progress=False, max_batch_time=0, whatif=False)
    section = report.document["length_curve"]
    statuses = {p["length"]: p["status"] for p in section["probes"]}
    assert statuses[2048] == "oom" and statuses[512] == "ok" and statuses[1024] == "ok"
    assert 512 < section["max_length"] < 2048
    assert report.document["fits"] is False
    assert "the longest that fits is" in {f["id"]: f["message"] for f in report.document["findings"]}["length-over-budget"]


def test_an_image_of_no_fixed_size_is_an_input_size_not_a_sequence_length():
    document = sample_document()
    document["length_curve"]["axes"] = [{"input": "image", "axes": [1, 2], "shape": [None, None, None, 3]}]
    text = " ".join(render_text(document).split())
    assert "Input size: input 'image' axis 1/2; planned 64" in text and "Sequence length" not in text
    assert "<h2>Input size</h2>" in render_html(document)
