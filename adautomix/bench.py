"""``adautomix bench``: per-step wall time and peak memory of each method on one backbone.

Every method runs in a fresh process (so peak memory is its own), on the same random batch
shape, with ``steps`` timed training steps (forward, backward, optimizer, EMA) after 3 warm-up
steps. Prints a table with each method's ratio to vanilla.
"""
from __future__ import annotations

import multiprocessing as mp
import resource
import statistics
import time

import torch


def _parse(spec: str) -> tuple[str, int | None]:
    name, _, n = spec.partition(":")
    return name, int(n) if n else None


def _measure(spec: str, batch_size: int, arch: str, width: float, steps: int, device: str,
             image_size: int) -> dict:
    from .config import load_config
    from .engine import build_optimizer, build_step, resolve_schedules, select_device

    name, n = _parse(spec)
    overrides = {"method.name": name, "model.arch": arch, "model.width": width,
                 "train.batch_size": batch_size, "train.device": device}
    if n is not None:
        overrides["method.n_mix"] = n
    cfg = load_config(overrides=overrides)
    resolve_schedules(cfg, 3 + steps)  # the EMA teacher's momentum (its value does not change the time)
    dev = select_device(cfg)
    torch.manual_seed(0)
    step = build_step(cfg, num_classes=100).to(dev).train()
    optimizer = build_optimizer(cfg, [p for p in step.parameters() if p.requires_grad])
    x = torch.randn(batch_size, 3, image_size, image_size, device=dev)
    y = torch.randint(0, 100, (batch_size,), device=dev)
    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for i in range(3 + steps):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        start = time.perf_counter()
        step.iteration = i
        loss, _ = step(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step.after_step(i, 3 + steps)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if i >= 3:
            times.append(time.perf_counter() - start)
    if dev.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated(dev) / 2**20
    else:  # growth of the process's peak resident set over the training steps
        peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_kib) / 1024
    return {"method": spec, "device": str(dev), "step_ms": 1000 * statistics.median(times),
            "peak_mib": peak_mib, "threads": torch.get_num_threads()}


def run_bench(methods: list[str], batch_size: int = 64, arch: str = "resnet18", width: float = 1.0,
              steps: int = 20, device: str = "auto", image_size: int = 32) -> list[dict]:
    """Measure each method in its own process and print the table; returns the rows."""
    if "vanilla" not in methods:
        methods = ["vanilla", *methods]
    ctx = mp.get_context("spawn")
    rows = []
    for spec in methods:
        with ctx.Pool(1) as pool:
            row = pool.apply(_measure, (spec, batch_size, arch, width, steps, device, image_size))
        rows.append(row)
        print(f"  measured {spec}: {row['step_ms']:.1f} ms/step", flush=True)
    base = next(r for r in rows if r["method"] == "vanilla")["step_ms"]
    mem_label = "peak MiB (CUDA allocated)" if rows[0]["device"].startswith("cuda") else "peak RSS growth MiB"
    print(f"\n{arch} width {width}, batch {batch_size}, {image_size}x{image_size}, device {rows[0]['device']}, "
          f"{rows[0]['threads']} threads, median of {steps} steps")
    print(f"| method | ms/step | x vanilla | img/s | {mem_label} |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        r["ratio"] = r["step_ms"] / base
        print(f"| {r['method']} | {r['step_ms']:.1f} | {r['ratio']:.2f} | "
              f"{batch_size / r['step_ms'] * 1000:.0f} | {r['peak_mib']:.0f} |")
    return rows
