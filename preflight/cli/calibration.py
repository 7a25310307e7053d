"""`python -m preflight calibration`: list the calibration store."""
from __future__ import annotations

import argparse
import json

from preflight import errors


def run(argv: list[str]) -> int:
    from preflight.analysis.calibration_store import ENVIRONMENT, read_records, store_path
    from preflight.render.calibration import calibration_table

    parser = argparse.ArgumentParser(
        prog="python -m preflight calibration",
        description="List the calibration store: each check's prediction and each real run recorded by "
                    "preflight.keras.MemoryCallback, runs next to the check of the same model.")
    parser.add_argument("--store", help=f"the store's file (default: {ENVIRONMENT}, else "
                                        "~/.cache/preflight/calibration.jsonl)")
    parser.add_argument("--model", help="only records of this model (its name or fingerprint)")
    parser.add_argument("--json", action="store_true", help="print the records as JSON lines instead")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return errors.EXIT_OK if exc.code == 0 else errors.EXIT_USAGE
    path = store_path(args.store)
    if path is None:
        raise errors.UsageError(f"the calibration store is turned off ({ENVIRONMENT}=none)",
                                hint=f"unset {ENVIRONMENT} or pass --store PATH")
    records = read_records(path)
    if args.model:
        records = [r for r in records if args.model in ((r.get("model") or {}).get("name"), r.get("fingerprint"))]
    if args.json:
        for record in records:
            print(json.dumps(record))
    else:
        print(calibration_table(records, str(path)))
    return errors.EXIT_OK
