"""`python -m preflight targets`: the named devices a check can be projected to."""
from __future__ import annotations

from preflight import errors


def run(argv: list[str] | None = None) -> int:
    from preflight.analysis.devices import get_target, list_targets
    from preflight.common.units import format_bytes

    for target in map(get_target, list_targets()):
        print(f"{target.name:<12} {target.kind:<4} {format_bytes(target.usable_bytes):>10}  {target.description}")
    return errors.EXIT_OK
