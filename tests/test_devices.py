"""The target catalogue: names, usable memory, typo errors."""
from __future__ import annotations

import psutil
import pytest

from preflight.analysis.devices import GIB, get_target, list_targets, tf_min_system_memory
from preflight.errors import UsageError

REQUIRED = ["cpu", "t4", "k80", "p100", "v100-16gb", "v100-32gb", "a10g", "l4", "a100-40gb", "a100-80gb",
            "h100-80gb", "tpu-v2", "tpu-v3", "tpu-v4", "tpu-v5e"]


def test_every_required_target_is_listed_and_resolves():
    assert set(REQUIRED) <= set(list_targets())
    for name in list_targets():
        target = get_target(name)
        assert target.name == name
        assert target.kind in ("CPU", "GPU", "TPU")
        assert target.usable_bytes > 0
        assert target.description


@pytest.mark.parametrize("name,card_gib", [("t4", 16), ("v100-16gb", 16), ("v100-32gb", 32), ("a100-40gb", 40),
                                           ("a100-80gb", 80), ("h100-80gb", 80), ("l4", 24), ("a10g", 24),
                                           ("p100", 16), ("k80", 12)])
def test_gpu_usable_is_below_the_card_size_by_a_plausible_reserve(name, card_gib):
    usable = get_target(name).usable_bytes
    assert 0.80 * card_gib * 1e9 < usable < card_gib * GIB
    assert get_target(name).xla_by_default


def test_tpu_targets_are_per_core():
    assert get_target("tpu-v3").usable_bytes < 16 * GIB
    assert get_target("tpu-v2").usable_bytes < get_target("tpu-v3").usable_bytes < get_target("tpu-v4").usable_bytes


def test_cpu_target_reads_this_host():
    cpu = get_target("CPU")
    assert cpu.kind == "CPU" and not cpu.xla_by_default
    assert cpu.usable_bytes <= psutil.virtual_memory().total


def test_lookup_is_case_and_underscore_tolerant():
    assert get_target("V100_16GB").name == "v100-16gb"


def test_typo_names_the_valid_targets():
    with pytest.raises(UsageError) as caught:
        get_target("v100")
    text = str(caught.value)
    assert "v100-16gb" in text and "tpu-v5e" in text and "--budget" in text


def test_tf_reserve_follows_compute_capability():
    assert tf_min_system_memory(6) < tf_min_system_memory(7) < tf_min_system_memory(8) < tf_min_system_memory(9)
