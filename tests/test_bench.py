"""Specifications of ``adautomix bench`` (adautomix.bench): which methods it measures and what it prints."""
from __future__ import annotations

import json
import subprocess
import sys

from adautomix.bench import PARTS, default_methods
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


def test_a_bad_switch_set_exits_2_naming_the_allowed_switches(tmp_path):
    result = bench("--switches", "none", "bf16+turbo", "--steps", "1", cwd=tmp_path)
    assert result.returncode == 2
    assert "bf16+turbo" in result.stderr and "bf16, cl, compile" in result.stderr
    assert "measured" not in result.stdout


def test_switches_and_the_profile_of_the_adautomix_step(tmp_path):
    result = bench("--methods", "adautomix:2", "--switches", "cl", "--profile", "--json", "rows.jsonl",
                   "--steps", "1", "--width", "0.125", "--batch-size", "4", "--device", "cpu", "--threads", "1",
                   cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [(r["method"], r["batch"], r["switches"]) for r in rows] == [("vanilla", 4, "cl"), ("adautomix:2", 4, "cl")]
    parts = rows[1]["profile"]
    assert set(parts) == {*PARTS, "rest", "step"}
    for name in ("adautomix.generator", "adautomix.classifier", "adautomix.teacher_mix"):
        assert parts[name]["forward_ms"] > 0 and parts[name]["backward_ms"] > 0, name
    assert parts["adautomix.teacher_clean"]["backward_ms"] == 0  # no gradient through the clean pass
    # each part, the rest included, is measured from the profiler's events, none derived from the
    # step's time: none is negative, the rest is there, and together they do not exceed the step
    assert all(p["forward_ms"] >= 0 and p["backward_ms"] >= 0 for name, p in parts.items() if name != "step")
    assert parts["rest"]["forward_ms"] > 0
    measured = sum(p["forward_ms"] + p["backward_ms"] for name, p in parts.items() if name != "step")
    assert measured <= parts["step"]["total_ms"] * 1.01
    assert "| generator |" in result.stdout and "| teacher, mix pass |" in result.stdout
