"""Record the child runs the default tests replay (tests/recorded; preflight.engine.recordings).

    python -m tests.record_children

from the repository root, after a change to preflight's code (which makes every record stale: the tests
then measure each child again, and take twice as long). It runs the README's test command with every child
measured, recording each run; the records replace tests/recorded only if every test passed, so a record is
always a figure a passing run measured.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

RECORDED = Path(__file__).parent / "recorded"
TEST_COMMAND = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2"]


def main() -> int:
    fresh = RECORDED.with_name("recorded.new")
    shutil.rmtree(fresh, ignore_errors=True)
    env = {**os.environ, "PREFLIGHT_REPLAY_DIR": str(fresh.resolve())}
    env.pop("PREFLIGHT_REPLAY_FROM", None)
    code = subprocess.run([*TEST_COMMAND, *sys.argv[1:]], env=env, cwd=RECORDED.parent.parent).returncode
    if code != 0:
        shutil.rmtree(fresh, ignore_errors=True)
        print(f"tests failed (exit {code}): tests/recorded left as it was", file=sys.stderr)
        return code
    (fresh / "runs.log").unlink(missing_ok=True)
    shutil.rmtree(fresh / "misses", ignore_errors=True)
    shutil.rmtree(RECORDED, ignore_errors=True)
    fresh.rename(RECORDED)
    print(f"{len(list(RECORDED.glob('*.json')))} child runs recorded in {RECORDED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
