"""The catalogue of bad inputs and injected faults (README: "When something is wrong").

Each case asserts the exit code, that the message names the cause and the fix, that no traceback is
printed, that an earlier report at the output paths is left as it was (no half-written report, no temp
file), and that no child process is left behind. Cases rejected at the door run without TensorFlow;
the others run real dry-run children on tiny models with one measured step.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

import preflight
from preflight.cli import main
from preflight.engine import zygote
from preflight.errors import UsageError

SAMPLE_REPORT = Path(__file__).parent / "data" / "sample_report.json"
MODELS = Path(__file__).parent / "models"
EARLIER = "an earlier report\n"
FAST = ["--steps", "1", "--json", "none", "--html", "none", "--quiet"]

TINY = """
import keras
import numpy as np
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="tiny")
model.compile("adam", "mse")
"""
# The first training step ever run never ends; it creates $PREFLIGHT_TEST_MARKER first, so a test knows
# the probe has begun. Steps in later children (a restart after the first child died) run normally.
HANGS = """
import os, time
import keras
import tensorflow as tf
batch_size = 2
def hang_once():
    marker = os.environ["PREFLIGHT_TEST_MARKER"]
    if not os.path.exists(marker):
        open(marker, "w").close()
        time.sleep(3600)
def stuck_loss(y_true, y_pred):
    tf.py_function(hang_once, [], [])
    return keras.losses.mean_squared_error(y_true, y_pred)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)], name="stuck")
model.compile("sgd", stuck_loss)
"""


@pytest.fixture(autouse=True)
def no_child_left_behind():
    yield
    # the fork server the tests keep between checks (conftest) is meant to stay; its children are not
    leftover = [p for p in psutil.Process().children(recursive=True) if p.pid not in zygote.server_pids()]
    _, alive = psutil.wait_procs(leftover, timeout=3)  # one on its way out (a server leaving idle) is not left
    assert not alive, f"child processes left behind: {[p.cmdline() for p in alive]}"


@pytest.fixture
def earlier(tmp_path):
    """Report paths holding a report from an earlier run; the case must leave them as they were."""
    folder = tmp_path / "out"
    folder.mkdir()
    paths = {"json": folder / "r.json", "html": folder / "r.html"}
    for path in paths.values():
        path.write_text(EARLIER)
    yield paths
    for path in paths.values():
        assert path.read_text() == EARLIER, f"{path.name} was changed"
    assert sorted(p.name for p in folder.iterdir()) == ["r.html", "r.json"], "a temp file was left"


def report_flags(paths) -> list[str]:
    return ["--json", str(paths["json"]), "--html", str(paths["html"]), "--quiet"]


def assert_message(code: int, err: str, expected_code: int, *cause: str, fix: str = "fix:") -> None:
    assert code == expected_code, err
    assert "Traceback" not in err, err
    for words in (*cause, fix):
        assert words.lower() in err.lower(), f"{words!r} not in: {err}"


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def model_file(tmp_path, source: str, name: str = "model.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


# ---- rejected at the door: exit 2 (or 3 for an unusable file), before TensorFlow starts -----------------

BAD_FLAGS = [
    (["--batch-size", "0"], "--batch-size = 0", "from 1 to"),
    (["--batch-size=-4"], "--batch-size = -4", "from 1 to"),
    (["--steps", "0"], "--steps = 0", "from 1 to 100"),
    (["--steps=-3"], "--steps = -3", "from 1 to 100"),
    (["--steps", "1000"], "--steps = 1000", "from 1 to 100"),
    (["--timeout", "0"], "--timeout = 0", "greater than 0"),
    (["--timeout=-5"], "--timeout = -5", "greater than 0"),
    (["--timeout", "nan"], "--timeout = nan", "greater than 0"),
    (["--budget", "0"], "--budget = '0'", "greater than 0"),
    (["--budget=-1GiB"], "--budget = '-1GiB'", "greater than 0"),
    (["--budget", "lots"], "'lots'", "15GiB"),
    (["--budget", "15 GiBs"], "'15 GiBs'", "15GiB"),
    (["--budget", "0.5B"], "'0.5B'", "greater than 0"),
    (["--target", "t5000"], "unknown target 't5000'", "t4"),
    (["--target", "a100"], "unknown target 'a100'", "a100-40gb"),
    (["--max-increase", "abc"], "'abc'", "10%"),
    (["--max-increase=-5%"], "'-5%'", "0 or more"),
    (["--epochs", "0"], "--epochs = 0", "from 1 to"),
    (["--time-limit", "soon"], "'soon'", "12h"),
    (["--time-limit", "0h"], "'0h'", "greater than 0"),
    (["--baseline", "no/such/baseline.json"], "no such file", "existing file"),
]


@pytest.mark.parametrize("flags,cause,allowed", BAD_FLAGS, ids=[" ".join(f[0]) for f in BAD_FLAGS])
def test_bad_flag_exits_2_naming_the_allowed_range(flags, cause, allowed, earlier, capsys):
    code, err = run_cli([MODELS / "cnn.py", *flags, *report_flags(earlier)], capsys)
    assert_message(code, err, 2, cause, allowed)


@pytest.mark.parametrize("argv,cause", [
    (["--no-such-flag"], "unrecognized arguments"),
    (["--batch-size", "64.5"], "invalid int value"),
])
def test_argparse_errors_exit_2_with_the_usage(argv, cause, earlier, capsys):
    code, err = run_cli([MODELS / "cnn.py", *argv, *report_flags(earlier)], capsys)
    assert_message(code, err, 2, cause, fix="usage:")


@pytest.mark.parametrize("variable,value,cause", [
    ("PREFLIGHT_BUDGET", "lots", "PREFLIGHT_BUDGET = 'lots'"),
    ("PREFLIGHT_BUDGET", "0GiB", "PREFLIGHT_BUDGET = '0GiB'"),
    ("PREFLIGHT_STEPS", "0", "PREFLIGHT_STEPS = '0'"),
    ("PREFLIGHT_TIMEOUT", "soon", "PREFLIGHT_TIMEOUT = 'soon'"),
    ("PREFLIGHT_SINGLE_THREAD", "maybe", "true or false"),
    ("PREFLIGHT_TARGET", "t5000", "PREFLIGHT_TARGET"),
])
def test_garbage_environment_variable_exits_2(variable, value, cause, monkeypatch, earlier, capsys):
    monkeypatch.setenv(variable, value)
    code, err = run_cli([MODELS / "cnn.py", *report_flags(earlier)], capsys)
    assert_message(code, err, 2, cause)


@pytest.mark.parametrize("table,cause", [
    ("batch-size = 64.5", "batch-size = 64.5"),
    ("batch-size = true", "batch-size = True"),
    ('steps = "many"', "steps = 'many'"),
    ("budget = 0", "budget = 0"),
    ("timeout = -1", "timeout = -1"),
    ("budget = [8]", "budget = [8]"),
    ('budget = "8GiB', "not valid TOML"),
])
def test_bad_pyproject_value_exits_2_naming_the_file_and_key(table, cause, tmp_path, monkeypatch, earlier, capsys):
    (tmp_path / "pyproject.toml").write_text(f"[tool.preflight]\nbudgett = '1GiB'\n{table}\n")
    monkeypatch.chdir(tmp_path)
    code, err = run_cli([MODELS / "cnn.py", *report_flags(earlier)], capsys)
    assert_message(code, err, 2, cause)
    if "TOML" not in cause:
        assert "pyproject.toml [tool.preflight]" in err and "unknown key [tool.preflight] 'budgett'" in err


def test_pyproject_section_that_is_not_a_table_exits_2(tmp_path, monkeypatch, earlier, capsys):
    (tmp_path / "pyproject.toml").write_text("[tool]\npreflight = 3\n")
    monkeypatch.chdir(tmp_path)
    code, err = run_cli([MODELS / "cnn.py", *report_flags(earlier)], capsys)
    assert_message(code, err, 2, "not a table")


def test_a_bad_pyproject_value_overridden_by_a_flag_does_not_stop_the_run(tmp_path):
    from preflight.settings.config import load_settings

    (tmp_path / "pyproject.toml").write_text("[tool.preflight]\nsteps = 0\n")
    assert load_settings({"steps": 2}, pyproject=tmp_path / "pyproject.toml", environ={}).steps == 2


@pytest.mark.parametrize("make_path,code_expected,cause", [
    (lambda tmp: tmp / "missing.py", 2, "no such file"),
    (lambda tmp: tmp, 2, "is a folder"),
    (lambda tmp: model_file(tmp, ""), 3, "is empty"),
    (lambda tmp: MODELS / "broken_syntax.py", 3, "syntax error at line 3"),
    (lambda tmp: model_file(tmp, "x = 1\0\n"), 3, "not Python source"),
    (lambda tmp: (tmp / "latin1.py").write_bytes(b"name = '\xe9'\n") and tmp / "latin1.py", 3, "UTF-8"),
], ids=["missing", "directory", "empty", "syntax-error", "null-byte", "not-utf8"])
def test_unusable_model_file_fails_before_tensorflow(make_path, code_expected, cause, tmp_path, earlier, capsys):
    started = time.monotonic()
    code, err = run_cli([make_path(tmp_path), *report_flags(earlier)], capsys)
    assert_message(code, err, code_expected, cause)
    assert time.monotonic() - started < 5  # no child, no TensorFlow


@pytest.mark.parametrize("flag,make_path,cause", [
    ("--json", lambda tmp: Path("/proc/preflight-report.json"), "cannot write in /proc"),
    ("--html", lambda tmp: Path("/dev/full"), "not a regular file"),
    ("--json", lambda tmp: tmp, "is a folder"),
    ("--html", lambda tmp: (tmp / "file.txt").write_text("x") and tmp / "file.txt" / "r.html", "is a file, not a folder"),
    ("--profile", lambda tmp: (tmp / "file.txt").write_text("x") and tmp / "file.txt", "is a file, not a folder"),
], ids=["unwritable-dir", "device", "directory", "parent-is-a-file", "profile-is-a-file"])
def test_unwritable_output_exits_2_before_probing(flag, make_path, cause, tmp_path, capsys):
    code, err = run_cli([MODELS / "cnn.py", flag, make_path(tmp_path), "--quiet"], capsys)
    assert_message(code, err, 2, cause)


def test_missing_parent_folders_of_a_report_are_created(tmp_path, capsys):
    target = tmp_path / "new" / "sub" / "again.html"
    code, err = run_cli(["render", SAMPLE_REPORT, "--html", target], capsys)
    assert code == 0 and "<html" in target.read_text()


def _write_truncated(path: Path) -> Path:
    path.write_text(SAMPLE_REPORT.read_text()[:5000])
    return path


def _write_edited(path: Path, edit) -> Path:
    """The sample report with one field changed, as a hand edit or another version might leave it."""
    document = json.loads(SAMPLE_REPORT.read_text())
    edit(document)
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize("make_report,cause", [
    (lambda tmp: (tmp / "r.json").write_text("<html>not json</html>") and tmp / "r.json", "is not JSON"),
    (lambda tmp: _write_truncated(tmp / "r.json"), "cut short"),
    (lambda tmp: (tmp / "r.json").write_text('{"name": "another tool"}') and tmp / "r.json", "not a preflight report"),
    (lambda tmp: (tmp / "r.json").write_text("[1, 2, 3]") and tmp / "r.json", "not a preflight report"),
    (lambda tmp: (tmp / "r.json").write_text('{"format": 99, "model": {}}') and tmp / "r.json", "format 99"),
    (lambda tmp: tmp / "absent.json", "cannot read the report"),
    (lambda tmp: (tmp / "r.json").write_bytes(b"\xff\xfe\x00garbage") and tmp / "r.json", "cannot read the report"),
    (lambda tmp: _write_edited(tmp / "r.json", lambda d: d["probes"][1].update(status="fine")),
     "report.probes[1].status: one of ok, oom, timeout, crashed, error expected, found 'fine'"),
    (lambda tmp: _write_edited(tmp / "r.json", lambda d: d.update(peak_bytes="40 MiB")),
     "report.peak_bytes: a whole number expected, found '40 MiB'"),
    (lambda tmp: _write_edited(tmp / "r.json", lambda d: d["findings"][0].pop("severity")),
     "report.findings[0].severity: missing"),
], ids=["not-json", "truncated", "foreign-object", "foreign-list", "other-format", "missing", "binary",
        "edited-status", "edited-peak", "finding-cut"])
def test_render_refuses_what_is_not_a_preflight_report(make_report, cause, tmp_path, earlier, capsys):
    code, err = run_cli(["render", make_report(tmp_path), "--html", earlier["html"],
                         "--markdown", earlier["json"]], capsys)
    assert_message(code, err, 2, cause)


def test_baseline_that_is_not_a_report_exits_2(tmp_path, earlier, capsys):
    (tmp_path / "base.json").write_text("{not json")
    code, err = run_cli([MODELS / "cnn.py", "--baseline", tmp_path / "base.json", "--max-increase", "10%",
                         *report_flags(earlier)], capsys)
    assert_message(code, err, 2, "base.json is not JSON")


@pytest.mark.parametrize("arguments,cause", [
    ({"batch_size": 0}, "batch_size = 0"),
    ({"steps": 0}, "steps = 0"),
    ({"timeout": -1}, "timeout = -1"),
    ({"budget": 0}, "budget = 0"),
    ({"budget": "lots"}, "budget = 'lots'"),
    ({"target": "t5000"}, "unknown target"),
    ({"probe_batch_sizes": []}, "at least one"),
    ({"probe_batch_sizes": [8, -1]}, "probe_batch_sizes item = -1"),
])
def test_check_arguments_raise_usage_error_before_any_work(arguments, cause):
    with pytest.raises(UsageError, match=cause.replace("(", r"\(")) as raised:
        preflight.check(str(MODELS / "cnn.py"), **arguments)
    assert raised.value.hint


def test_check_search_and_guard_arguments_are_checked_too():
    with pytest.raises(UsageError, match="time_limit"):
        preflight.check_search(lambda hp: None, time_limit="never")
    with pytest.raises(UsageError, match="batch_size"):
        preflight.guard(object(), budget="1GiB", batch_size=0)


def test_disk_full_while_writing_the_report_leaves_the_earlier_one(earlier):
    """A file-size limit makes the write fail part-way (EFBIG), as a full disk would (ENOSPC)."""
    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    result = subprocess.run([sys.executable, "-m", "preflight", "render", str(SAMPLE_REPORT),
                             "--html", str(earlier["html"])], capture_output=True, text=True,
                            preexec_fn=limit_file_size, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert_message(result.returncode, result.stderr, 2, "cannot write the report", "file too large")


HOSTILE_NAMES = ["<script>alert(1)</script>", "</script><script>alert(2)</script>", "quote\"'`&amp;", "ünïcødé ✓ 😀"]


def test_hostile_names_are_escaped_in_html_and_markdown(tmp_path, capsys):
    """TensorFlow only trains layers named like ^[A-Za-z0-9_.\\/>-]*$, but a class name is free: one real run
    carries a hostile class name; the others are put into its report, as another version might write them."""
    hostile = model_file(tmp_path, """
        import keras
        Script = type("</script><script>alert(0)</script>", (keras.layers.Dense,), {})
        model = keras.Sequential([keras.Input((4,)), Script(3, name="a>b"), keras.layers.Dense(2)], name="evil")
        model.compile("adam", "mse")
        """, name="hostile.py")
    code, err = run_cli([hostile, "--steps", "1", "--batch-size", "2", "--json", tmp_path / "r.json",
                         "--html", tmp_path / "r.html", "--quiet"], capsys)
    assert code == 0, err
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["layers"][0]["type"] == "</script><script>alert(0)</script>"
    document["layers"] += [dict(document["layers"][-1], name=name) for name in HOSTILE_NAMES]
    document["findings"].append({"id": "x", "severity": "warning", "message": " ".join(HOSTILE_NAMES)})
    (tmp_path / "r.json").write_text(json.dumps(document))
    assert run_cli(["render", tmp_path / "r.json", "--html", tmp_path / "r.html",
                    "--markdown", tmp_path / "r.md"], capsys)[0] == 0
    for path in (tmp_path / "r.html", tmp_path / "r.md"):
        text = path.read_text(encoding="utf-8")
        assert "<script>alert" not in text and "</script><script>" not in text, path.name
        assert "ünïcødé ✓ 😀" in text
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.count("<script") == 1  # only the page's own JSON island
    assert "&lt;/script&gt;&lt;script&gt;alert(0)" in page and "&lt;script&gt;alert(1)" in page
    assert "quote&#34;&#39;`&amp;amp;" in page


# ---- the user's model or data fails in the child: exit 3, no report --------------------------------------

BAD_MODELS = {
    "missing-import": ("import keras\nimport no_such_package_xyz\n", "No module named 'no_such_package_xyz'"),
    "build-model-raises": ((MODELS / "raises.py").read_text(), "NameError"),
    "returns-none": ("def build_model():\n    return None\n", "NoneType, not a keras.Model"),
    "returns-non-model": ("def build_model():\n    return {'layers': 3}\n", "dict, not a keras.Model"),
    "layer-name-tf-rejects": ("import keras\nmodel = keras.Sequential([keras.Input((4,)), "
                              "keras.layers.Dense(2, name='a<b')])\nmodel.compile('adam', 'mse')\n",
                              "'a<b' is not a valid scope name"),
    "uncompiled": ((MODELS / "uncompiled.py").read_text(), "is not compiled"),
    "no-model": ("x = 1\n", "defines no model"),
    "subclassed-never-built": ("""
        import keras
        class Tiny(keras.Model):
            def __init__(self):
                super().__init__(name="tiny_subclassed")
                self.dense = keras.layers.Dense(2)
            def call(self, x):
                return self.dense(x)
        def build_model():
            model = Tiny()
            model.compile("adam", "mse")
            return model
        """, "no known input shape"),
    "wrong-data-shape": ((MODELS / "wrong_shape.py").read_text(), "shape"),
    "string-data": (TINY + "def get_dataset():\n    return np.array([['a'] * 4] * 16), np.zeros((16, 2), 'float32')\n",
                    "inputs hold text"),
    "labels-not-matching-loss": (TINY + "def get_dataset():\n    return np.zeros((16, 4), 'f4'), np.zeros((16, 7), 'f4')\n",
                                 "Dimensions must be equal, but are 7 and 2"),
    "empty-dataset": (TINY + "import tensorflow as tf\ndef get_dataset():\n"
                      "    return tf.data.Dataset.from_tensor_slices((np.zeros((0, 4), 'f4'), np.zeros((0, 2), 'f4')))\n",
                      "dataset is empty"),
    "generator-raises-midway": (TINY + """
import tensorflow as tf
def samples():
    for i in range(100):
        if i == 1:
            raise RuntimeError("corrupt record 1")
        yield np.zeros(4, "float32"), np.zeros(2, "float32")
def get_dataset():
    return tf.data.Dataset.from_generator(samples, output_signature=(
        tf.TensorSpec((4,), tf.float32), tf.TensorSpec((2,), tf.float32)))
""", "RuntimeError: corrupt record 1"),
    "sys-exit-at-import": ("import sys\nsys.exit(3)\n", "called sys.exit(3) while loading"),
    "os-exit-at-import": ("import os\nos._exit(0)\n", "os._exit()"),
    # A fit(...) at import is the plan (tests/test_bring_your_work.py); a broken one is the user's error.
    "fit-at-import-wrong-labels": (TINY + "model.fit(np.zeros((8, 4), 'f4'), np.zeros((8, 7), 'f4'), epochs=100)\n",
                                   "Dimensions must be equal, but are 7 and 2"),
    "fit-at-import-bad-keyword": (TINY + "model.fit(np.zeros((8, 4)), np.zeros((8, 2)), epoch=100)\n",
                                  "got an unexpected keyword argument 'epoch' (model.py, line 6)"),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_bad_model_or_data_exits_3_without_a_report(case, tmp_path, earlier, capsys):
    source, cause = BAD_MODELS[case]
    path = model_file(tmp_path, source)
    code, err = run_cli([path, "--steps", "1", "--batch-size", "2", *report_flags(earlier)], capsys)
    assert_message(code, err, 3, cause)


def test_nan_loss_is_measured_and_fails_the_gate(tmp_path, capsys):
    path = model_file(tmp_path, TINY + "def get_dataset():\n    return np.full((8, 4), np.nan, 'f4'), np.zeros((8, 2), 'f4')\n")
    code, out = run_cli([path, "--batch-size", "2", "--steps", "1", "--json", tmp_path / "r.json", "--html", "none"],
                        capsys)
    assert code == 1, out  # a run that cannot train must not pass the gate (issue 12's loss sanity)
    assert "the loss was nan" in out.lower() and "check the data" in out.lower() and "Traceback" not in out
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["peak_bytes"] > 0 and any(f["id"] == "loss-not-finite" for f in document["findings"])


# ---- faults injected while it runs ---------------------------------------------------------------------

def _when(condition, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the dry run never reached its first step"
        time.sleep(0.2)


@pytest.mark.measured_children  # a real child, stopped
def test_a_step_that_hangs_becomes_a_timeout_result(tmp_path, monkeypatch, earlier, capsys):
    monkeypatch.setenv("PREFLIGHT_TEST_MARKER", str(tmp_path / "marker"))
    path = model_file(tmp_path, HANGS)
    started = time.monotonic()
    code, err = run_cli([path, "--timeout", "10", "--steps", "1", "--budget", "1GiB", "--json", tmp_path / "r.json",
                         "--html", "none", "--quiet"], capsys)
    assert (tmp_path / "marker").exists()  # it timed out in the step, not while loading
    document = json.loads((tmp_path / "r.json").read_text())
    assert [p["status"] for p in document["probes"]] == ["timeout"]
    assert "timeout" in document["findings"][0]["message"] and "Traceback" not in err
    assert code == 1 and time.monotonic() - started < 120


@pytest.mark.measured_children  # a real child, stopped
def test_child_killed_mid_probe_is_a_result_not_a_crash(tmp_path, monkeypatch, capsys):
    """A SIGKILL is what the kernel's OOM killer sends: the probe counts as out of memory, and a smaller
    batch is measured in a fresh child."""
    marker = tmp_path / "marker"
    monkeypatch.setenv("PREFLIGHT_TEST_MARKER", str(marker))
    path = model_file(tmp_path, HANGS)

    def kill_the_child():
        _when(marker.exists)
        for child in psutil.Process().children(recursive=True):
            child.kill()

    killer = threading.Thread(target=kill_the_child)
    killer.start()
    code, err = run_cli([path, "--steps", "1", "--budget", "1GiB", "--timeout", "60", "--json", tmp_path / "r.json",
                         "--html", "none", "--quiet"], capsys)
    killer.join()
    probes = {p["batch_size"]: p for p in json.loads((tmp_path / "r.json").read_text())["probes"]}
    assert probes[2]["status"] == "oom" and "SIGKILL" in probes[2]["message"]
    assert probes[1]["status"] == "ok"
    assert code == 1 and "Traceback" not in err  # the planned batch 2 did not fit


@pytest.mark.measured_children  # a real child, stopped
@pytest.mark.parametrize("signum,code,says", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_or_sigterm_to_the_cli_leaves_no_orphan_and_no_report(signum, code, says, tmp_path, earlier):
    marker = tmp_path / "marker"
    path = model_file(tmp_path, HANGS)
    # Ctrl-C's SIGINT as a terminal delivers it: a suite started in the background (`cmd &` in a script) runs
    # with SIGINT ignored, and a process inherits that
    cli = subprocess.Popen([sys.executable, "-m", "preflight", str(path), *report_flags(earlier)],
                           stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                           env={**os.environ, "PREFLIGHT_TEST_MARKER": str(marker), "PYTHONPATH": os.getcwd()})
    _when(marker.exists)
    children = psutil.Process(cli.pid).children(recursive=True)
    assert children
    cli.send_signal(signum)
    _, err = cli.communicate(timeout=60)
    assert cli.returncode == code and "Traceback" not in err and says in err
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive


def test_check_twice_in_one_process(tmp_path):
    path = model_file(tmp_path, TINY)
    first = preflight.check(str(path), probe_batch_sizes=[2], steps=1, progress=False, whatif=False)
    second = preflight.check(str(path), probe_batch_sizes=[2], steps=1, progress=False, whatif=False)
    for report in (first, second):
        assert report.document["model"]["name"] == "tiny" and report.peak_bytes > 0
    assert first.document["model"] == second.document["model"]


def test_report_load_refuses_what_preflight_did_not_write(tmp_path):
    """Report.load validates what it reads (issue 22): the CLI's --baseline and render use it."""
    from preflight.errors import ConfigError
    from preflight.render.report import Report

    assert Report.load(SAMPLE_REPORT).fits is not None
    cases = {"cut.json": SAMPLE_REPORT.read_text()[:200], "other.json": '{"peak": 1}',
             "old.json": json.dumps({**json.loads(SAMPLE_REPORT.read_text()), "format": 0})}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError) as raised:
            Report.load(tmp_path / name)
        assert str(tmp_path / name) in str(raised.value) and raised.value.hint
