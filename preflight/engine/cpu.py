"""The host CPU's name and core count, for the report's device line (any backend)."""
from __future__ import annotations

import os
import platform


def cpu_description() -> str:
    return f"CPU:0 ({_cpu_model_name()}, {os.cpu_count()} cores)"


def _cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
