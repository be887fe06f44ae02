"""`adautomix eval` and `train.final_eval`: the real command line on a tiny digits run.

One run is trained once for the module (ResNet-18 at 1/8 width, 128 images, 1 epoch) with
``train.final_eval=[calibration,fgsm]``; ``adautomix eval`` then runs all four suites on it.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from adautomix.evaluation.corruptions import CORRUPTIONS

BIN = Path(sys.executable).parent
TINY = ["data.name=digits", "data.limit_train=128", "data.limit_test=32", "model.width=0.125",
        "train.epochs=1", "train.batch_size=32", "train.threads=1"]


def adautomix(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "adautomix"), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("eval")
    done = adautomix("train", *TINY, "method.name=mixup", "train.final_eval=[calibration,fgsm]",
                     f"out_dir={folder / 'run'}", cwd=folder)
    assert done.returncode == 0, done.stderr
    return folder / "run"


def test_final_eval_puts_its_numbers_in_the_last_epoch_record_and_eval_json(run_dir):
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"eval_ece", "eval_top1", "eval_fgsm_top1"} <= set(last)
    assert not any(k.startswith(("eval_corruption", "eval_occlusion")) for k in last)
    assert last["eval_top1"] == pytest.approx(last["top1"])  # the headline model, the whole test split
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["eval"]["eval_fgsm_top1"] == last["eval_fgsm_top1"]
    record = json.loads((run_dir / "eval.json").read_text())
    assert record["model"]["head"] == "one" and record["data"]["test_images"] == 32
    assert (run_dir / "pictures" / "reliability.png").exists()


def test_eval_writes_every_number_the_suites_promise(run_dir):
    done = adautomix("eval", run_dir, "--suite", "corruption,occlusion,calibration,fgsm", cwd=run_dir.parent)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and " s" in done.stdout.splitlines()[-1]  # the time taken
    record = json.loads((run_dir / "eval.json").read_text())
    cal = record["calibration"]
    assert 0 <= cal["ece"] <= 100 and cal["n_bins"] == 15 and sum(cal["bins"]["count"]) == 32
    cor = record["corruption"]
    assert set(cor["per_type"]) == set(CORRUPTIONS) and len(CORRUPTIONS) == 19
    assert all(set(v["by_severity"]) == {"1", "2", "3", "4", "5"} for v in cor["per_type"].values())
    assert cor["synthetic"] == ["frost"] and "frost" in cor["note"]
    means = [v["top1"] for v in cor["per_type"].values()]
    assert cor["top1_mean"] == pytest.approx(sum(means) / 19)
    assert record["fgsm"]["epsilon_255"] == pytest.approx(8)
    occ = record["occlusion"]
    assert occ["ratios"] == [i / 10 for i in range(11)] and len(occ["top1"]) == 11 and occ["patch"] == 16
    assert occ["top1"][0] == pytest.approx(cal["top1"])  # nothing masked: the clean accuracy
    assert occ["masked_fraction"][0] == 0 and occ["masked_fraction"][-1] == 1
    metrics = record["metrics"]
    assert len([k for k in metrics if k.startswith("eval_corruption_top1_")]) == 19 + 1
    assert len([k for k in metrics if k.startswith("eval_occlusion_top1_")]) == 11 + 1
    assert {"eval_ece", "eval_top1", "eval_fgsm_top1", "eval_corruption_top1"} <= set(metrics)
    for picture in ("reliability.png", "occlusion.png"):
        assert (run_dir / "pictures" / picture).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args, message", [
    (["{run}/pictures"], "no checkpoint at"),
    (["{run}", "--suite", "calibration,robustness"], "unknown suite 'robustness'; allowed:"),
    (["{run}", "--suite", "fgsm", "model.width=0.5"], "does not fit the run's config"),
])
def test_bad_input_is_one_line_and_exit_2(run_dir, args, message):
    done = adautomix("eval", *[a.format(run=run_dir) for a in args], cwd=run_dir.parent)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_file_that_is_no_checkpoint_is_named_as_such(run_dir):
    from adautomix.engine import CheckpointError, read_checkpoint

    with pytest.raises(CheckpointError, match="config.yaml: not a readable torch checkpoint"):
        read_checkpoint(run_dir / "config.yaml")
