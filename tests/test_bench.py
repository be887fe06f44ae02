"""Specifications of ``adautomix bench`` (adautomix.bench): which methods it measures and what it prints."""
from __future__ import annotations

import subprocess
import sys

from adautomix.bench import default_methods
from adautomix.methods.registry import METHODS


def bench(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adautomix", "bench", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, stdin=subprocess.DEVNULL)


def test_by_default_every_registered_method_is_measured_adautomix_at_n_2_and_3():
    specs = default_methods()
    assert {spec.partition(":")[0] for spec in specs} == set(METHODS)
    assert "adautomix:2" in specs and "adautomix:3" in specs and "adautomix" not in specs
    assert specs[0] == "vanilla"


def test_an_unknown_method_exits_2_before_anything_is_measured(tmp_path):
    result = bench("--methods", "mixup", "nosuchmix", "--steps", "1", cwd=tmp_path)
    assert result.returncode == 2
    assert "method.name" in result.stderr and "nosuchmix" in result.stderr
    assert "measured" not in result.stdout


def test_prints_one_row_per_method_with_its_ratio_to_vanilla(tmp_path):
    result = bench("--methods", "smoothmix", "adautomix:2", "--steps", "1", "--width", "0.125",
                   "--batch-size", "8", "--device", "cpu", "--threads", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| ")]
    assert [r[0].strip() for r in rows] == ["method", "vanilla", "smoothmix", "adautomix:2"]
    assert rows[1][2].strip() == "1.00" and all(float(r[2]) > 0 for r in rows[2:])
    assert "1 threads" in result.stdout
