"""The paper's evaluation suite on one trained model: calibration, corruption robustness, FGSM
and occlusion robustness (Adversarial AutoMixup, Qin et al., ICLR 2024, §4: Figure 4, Table 4,
Figure 5), on the clean test split, with every draw from a fixed seed.

``run_suites`` evaluates a model (what scores a run's headline ``top1``) batch by batch and
returns the ``eval.json`` record; ``flat_metrics`` turns it into the scalars a run reports (each
named ``eval_*``). Nothing here imports Ray or MLflow, nor the engine.

| suite | numbers (all in %) |
|---|---|
| calibration | ``ece`` (15 bins), the reliability bins, ``pictures/reliability.png`` |
| corruption | top-1 per type and severity, per type (mean over severities), the mean over all |
|            | 19 x 5 (and over the 18 made as the authors do: frost is synthetic here)     |
| fgsm | top-1 on FGSM images, ε = 8/255 in pixel space |
| occlusion | top-1 at masked fractions 0, 10, ..., 100 % of 16 x 16 patches, their mean, ``pictures/occlusion.png`` |
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..config import EVAL_SUITES as SUITES
from ..config import EvalConfig
from . import attacks, calibration, corruptions, occlusion

EVAL_FILE = "eval.json"
FROST_NOTE = ("frost: the authors blend photographs of frost that ship with their repository; "
              "nothing is downloaded here, so frost blends a synthetic texture with the CIFAR "
              "weights (corruptions.frost_texture): not comparable with published CIFAR-C frost "
              "numbers. top1_mean_without_synthetic leaves it out.")


def _seed(*parts: int) -> int:
    """A 63-bit seed derived from ``parts`` (numpy's SeedSequence)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, np.uint64)[0] >> np.uint64(1))


@torch.no_grad()
def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    return int((model(x).argmax(dim=1) == y).sum())


def _to_uint8(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> np.ndarray:
    """Normalised ``B x 3 x H x W`` -> uint8 pixels ``B x H x W x 3``."""
    pixels = (x * std + mean).mul(255).round().clamp(0, 255)
    return pixels.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _from_uint8(images: np.ndarray, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    pixels = torch.from_numpy(images).to(mean.device).permute(0, 3, 1, 2).float() / 255
    return (pixels - mean) / std


def run_calibration(model, batches, settings: EvalConfig, pictures: Path, title: str) -> dict:
    """Clean top-1, ECE and the reliability bins over the whole test split."""
    logits, labels = [], []
    with torch.no_grad():
        for x, y in batches:
            logits.append(model(x).float().cpu())
            labels.append(y.cpu())
    logits, labels = torch.cat(logits), torch.cat(labels)
    ece = calibration.expected_calibration_error(logits, labels, settings.calibration_bins)
    bins = calibration.reliability_bins(logits, labels, settings.calibration_bins)
    picture = calibration.save_reliability_diagram(pictures / "reliability.png", bins, title, ece)
    top1 = 100 * float((logits.argmax(1) == labels).double().mean())
    return {"top1": top1, "ece": 100 * ece, "n_bins": settings.calibration_bins, "bins": bins,
            "picture": str(picture.relative_to(pictures.parent))}


def run_corruption(model, batches, mean, std, settings: EvalConfig, log: Callable[[str], None]) -> dict:
    """Top-1 under each corruption type and severity (CIFAR-C), generated from each test batch."""
    names = list(corruptions.CORRUPTIONS)
    correct = {(n, s): 0 for n in names for s in corruptions.SEVERITIES}
    total = 0
    for b, (x, y) in enumerate(batches):
        clean = _to_uint8(x, mean, std)
        for t, name in enumerate(names):
            for s in corruptions.SEVERITIES:
                rng = np.random.default_rng(_seed(settings.seed, t, s, b))
                images = corruptions.corrupt(clean, name, s, rng)
                correct[name, s] += _correct(model, _from_uint8(images, mean, std), y)
        total += len(y)
        log(f"  corruption: {total} test images done")
    per_type = {}
    for name in names:
        by_severity = {str(s): 100 * correct[name, s] / total for s in corruptions.SEVERITIES}
        per_type[name] = {"top1": float(np.mean(list(by_severity.values()))), "by_severity": by_severity}
    exact = [n for n in names if n not in corruptions.SYNTHETIC]
    return {"top1_mean": float(np.mean([per_type[n]["top1"] for n in names])),
            "top1_mean_without_synthetic": float(np.mean([per_type[n]["top1"] for n in exact])),
            "per_type": per_type, "severities": list(corruptions.SEVERITIES),
            "synthetic": list(corruptions.SYNTHETIC), "note": FROST_NOTE, "seed": settings.seed}


def run_fgsm(model, batches, mean, std, settings: EvalConfig) -> dict:
    """Top-1 on FGSM images of the test split (white-box, pixel-space ε)."""
    correct = total = 0
    for x, y in batches:
        adversarial = attacks.fgsm(model, x, y, mean, std, settings.fgsm_epsilon)
        correct += _correct(model, adversarial, y)
        total += len(y)
    return {"epsilon": settings.fgsm_epsilon, "epsilon_255": settings.fgsm_epsilon * 255,
            "top1": 100 * correct / total}


def run_occlusion(model, batches, mean, std, settings: EvalConfig, pictures: Path, title: str) -> dict:
    """Top-1 at each masked fraction of ``occlusion.RATIOS`` (random patches, fixed seed)."""
    ratios = occlusion.RATIOS
    correct, masked = [0] * len(ratios), [0.0] * len(ratios)
    total = 0
    for b, (x, y) in enumerate(batches):
        pixels = x * std + mean
        for i, ratio in enumerate(ratios):
            generator = torch.Generator().manual_seed(_seed(settings.seed, 1000 + i, b))
            mask = occlusion.occlusion_mask(len(y), x.shape[2], x.shape[3], ratio, settings.occlusion_patch,
                                            generator).to(x.device)
            correct[i] += _correct(model, (occlusion.occlude(pixels, mask) - mean) / std, y)
            masked[i] += float(mask.mean()) * len(y)
        total += len(y)
    top1 = [100 * c / total for c in correct]
    result = {"patch": settings.occlusion_patch, "seed": settings.seed, "ratios": list(ratios), "top1": top1,
              "masked_fraction": [m / total for m in masked], "top1_mean": float(np.mean(top1))}
    picture = save_occlusion_curve(pictures / "occlusion.png", {title: result})
    result["picture"] = str(picture.relative_to(pictures.parent))
    return result


def save_occlusion_curve(path: Path, curves: dict[str, dict], errors: dict[str, list] | None = None) -> Path:
    """Top-1 against the masked fraction, one line per entry of ``curves`` (``{"ratios",
    "top1"}``), with error bars from ``errors`` when given (the paper's Figure 5 style)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    for name, curve in curves.items():
        xs = [100 * r for r in curve["ratios"]]
        if errors and name in errors:
            ax.errorbar(xs, curve["top1"], yerr=errors[name], marker="o", ms=3, capsize=3, label=name)
        else:
            ax.plot(xs, curve["top1"], marker="o", ms=3, label=name)
    ax.set_xlabel("occluded area (%)")
    ax.set_ylabel("top-1 (%)")
    ax.set_xlim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def run_suites(model: nn.Module, batches: Iterable, mean: Iterable[float], std: Iterable[float],
               suites: Iterable[str], settings: EvalConfig, run_dir: Path, title: str,
               log: Callable[[str], None] = print) -> dict:
    """Run ``suites`` on ``model`` and return their results (the body of ``eval.json``).

    Args:
        model: normalised images ``B x 3 x H x W`` -> logits; put in eval mode here.
        batches: re-iterable ``(x, y)`` test batches (normalised ``x`` on the model's device).
        mean, std: the normalisation of ``x`` ([0, 1] units, per channel).
        suites: names from ``SUITES``.
        settings: seed, FGSM ε, occlusion patch, calibration bins (config section ``eval``).
        run_dir: pictures go to ``run_dir/pictures/``.
        title: names the model in the pictures.
        log: progress lines.
    """
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise ValueError(f"unknown suite(s) {', '.join(unknown)}; allowed: {', '.join(SUITES)}")
    model.eval()
    device = next(model.parameters()).device
    mean = torch.tensor(list(mean), device=device).view(1, 3, 1, 1)
    std = torch.tensor(list(std), device=device).view(1, 3, 1, 1)
    pictures = Path(run_dir) / "pictures"
    pictures.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    for suite in suites:
        start = time.perf_counter()
        if suite == "calibration":
            results[suite] = run_calibration(model, batches, settings, pictures, title)
            line = f"top-1 {results[suite]['top1']:.2f} %, ECE {results[suite]['ece']:.2f} %"
        elif suite == "corruption":
            results[suite] = run_corruption(model, batches, mean, std, settings, log)
            line = (f"mean top-1 {results[suite]['top1_mean']:.2f} % over {len(corruptions.CORRUPTIONS)} types x "
                    f"{len(corruptions.SEVERITIES)} severities ({results[suite]['top1_mean_without_synthetic']:.2f} % "
                    "without the synthetic frost)")
        elif suite == "fgsm":
            results[suite] = run_fgsm(model, batches, mean, std, settings)
            line = f"top-1 {results[suite]['top1']:.2f} % at ε = {settings.fgsm_epsilon * 255:g}/255"
        else:
            results[suite] = run_occlusion(model, batches, mean, std, settings, pictures, title)
            line = "top-1 " + ", ".join(f"{100 * r:.0f}%: {a:.1f}" for r, a in
                                        zip(results[suite]["ratios"], results[suite]["top1"]))
        results[suite]["seconds"] = time.perf_counter() - start
        log(f"{suite}: {line} ({results[suite]['seconds']:.1f} s)")
        if suite == "corruption":  # the per-type table
            log(f"  {'type':18s} {'mean':>6s}  " + " ".join(f"{'s' + str(s):>5s}" for s in corruptions.SEVERITIES))
            for name, v in results[suite]["per_type"].items():
                log(f"  {name + ('*' if name in corruptions.SYNTHETIC else ''):18s} {v['top1']:6.2f}  "
                    + " ".join(f"{a:5.1f}" for a in v["by_severity"].values()))
            log("  * synthetic frost texture (docs/evaluation.md: Deviation: frost)")
    return results


def flat_metrics(results: dict) -> dict[str, float]:
    """The scalars of ``results`` a run reports and MLflow logs, all in %: ``eval_ece``,
    ``eval_top1``, ``eval_corruption_top1`` (+ ``_without_synthetic`` and ``_<type>``),
    ``eval_fgsm_top1``, ``eval_occlusion_top1_<ratio %, 3 digits>`` and ``eval_occlusion_top1_mean``."""
    out: dict[str, float] = {}
    if "calibration" in results:
        out["eval_top1"] = results["calibration"]["top1"]
        out["eval_ece"] = results["calibration"]["ece"]
    if "corruption" in results:
        c = results["corruption"]
        out["eval_corruption_top1"] = c["top1_mean"]
        out["eval_corruption_top1_without_synthetic"] = c["top1_mean_without_synthetic"]
        out.update({f"eval_corruption_top1_{name}": v["top1"] for name, v in c["per_type"].items()})
    if "fgsm" in results:
        out["eval_fgsm_top1"] = results["fgsm"]["top1"]
    if "occlusion" in results:
        o = results["occlusion"]
        out.update({f"eval_occlusion_top1_{round(100 * r):03d}": a for r, a in zip(o["ratios"], o["top1"])})
        out["eval_occlusion_top1_mean"] = o["top1_mean"]
    return out


def write_eval_json(run_dir: Path, results: dict, about: dict) -> Path:
    """Merge ``results`` into ``run_dir/eval.json`` (suites run before and not now are kept) with
    ``about`` (the model, the data) and the flat ``metrics``."""
    path = Path(run_dir) / EVAL_FILE
    record = json.loads(path.read_text()) if path.exists() else {}
    record.update(about)
    record.update(results)
    record["metrics"] = flat_metrics(record)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)
    return path
