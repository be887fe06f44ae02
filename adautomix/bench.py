"""``adautomix bench``: per-step wall time and peak memory of each method on one backbone.

A measurement is one method at one batch size with one set of GPU switches (``none``: fp32,
NCHW, eager; or ``bf16``, ``cl`` (channels-last), ``compile`` joined by ``+``, as the training
switches ``train.bf16``, ``train.channels_last``, ``train.compile`` apply them). It runs the whole
training step (mixing, forward, backward, optimizer, EMA) on a fixed random batch: warm-up steps
first (the first one compiles; AdAutoMix and AutoMix take one more with plain mixup in the
classifier branch, so that the compiled step's second graph exists too), then ``steps`` timed
steps. CPU: the median step, each measurement in a fresh process (its peak RSS growth is its
own). CUDA: the timed steps run back to back with one synchronisation at the end, as in training;
each method gets one fresh process for its measurements, peak memory from CUDA's allocator
(reset between them). Prints a table with each row's ratio to vanilla at the same batch size and
switches. By default it measures every registered method, methods with ``method.n_mix`` at
N = 2 and 3.

``profile=True`` adds, for AdAutoMix measured without ``compile``, the PyTorch profiler's
breakdown of a step: the time of the teacher's clean pass, the generator, the classifier's
passes and the teacher's pass on the generated mixes, forward and backward (the step labels them
with ``record_function``; a backward op is counted where its forward op ran), and the rest
(mixing, losses, optimizer, EMA: the profiled ops outside every label, measured like the parts,
not the step's time less theirs). GPU time on CUDA, CPU time on the CPU.
"""
from __future__ import annotations

import gc
import json
import multiprocessing as mp
import resource
import statistics
import time
from collections import defaultdict

import torch

SWITCH_NAMES = {"bf16": "bf16", "cl": "channels_last", "compile": "compile"}
PARTS = {"adautomix.teacher_clean": "teacher, clean pass", "adautomix.generator": "generator",
         "adautomix.classifier": "classifier, 3 passes", "adautomix.teacher_mix": "teacher, mix pass"}


def default_methods() -> list[str]:
    """Every registered method; ``name:2`` and ``name:3`` for those with ``method.n_mix``."""
    from .methods.registry import METHODS

    specs = []
    for name, method in METHODS.items():
        specs += [f"{name}:2", f"{name}:3"] if "n_mix" in method.params else [name]
    return specs


def parse_switches(text: str) -> dict[str, bool]:
    """``"none"`` or switch names joined by ``+`` (``bf16+cl+compile``) -> ``{switch: on}``."""
    from .config import ConfigError

    tokens = [] if text == "none" else text.split("+")
    unknown = [t for t in tokens if t not in SWITCH_NAMES]
    if unknown or not tokens and text != "none":
        raise ConfigError(f"bench switches {text!r}: expected none or {', '.join(SWITCH_NAMES)} joined by +")
    return {name: key in tokens for key, name in SWITCH_NAMES.items()}


def _config(spec: str, batch_size: int, arch: str, width: float, device: str, threads: int = 0):
    """The validated config of ``name`` or ``name:N`` (``ConfigError`` for a bad one)."""
    from .config import ConfigError, load_config

    name, _, n = spec.partition(":")
    overrides = {"method.name": name, "model.arch": arch, "model.width": width,
                 "train.batch_size": batch_size, "train.device": device, "train.threads": threads}
    if n:
        if not n.isdigit():
            raise ConfigError(f"bench method {spec!r}: expected name or name:N with N an integer")
        overrides["method.n_mix"] = int(n)
    return load_config(overrides=overrides)


def _measure(spec: str, batch_size: int, switches: str, arch: str, width: float, steps: int,
             device: str, image_size: int, threads: int, profile: bool) -> dict:
    from . import accel
    from .engine import build_optimizer, build_step, resolve_schedules, select_device

    cfg = _config(spec, batch_size, arch, width, device, threads)
    on = parse_switches(switches)
    total = 4 + steps
    cfg, _ = resolve_schedules(cfg, total)  # e.g. the EMA teacher's momentum for a run this long
    if threads:
        torch.set_num_threads(threads)
    dev = select_device(cfg)
    cuda = dev.type == "cuda"
    torch._dynamo.reset()
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    baseline = torch.cuda.memory_allocated(dev) if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    torch.manual_seed(0)
    step = build_step(cfg, num_classes=100).to(dev).train()
    fmt = torch.channels_last if on["channels_last"] else torch.contiguous_format
    step.to(memory_format=fmt)
    optimizer = build_optimizer(cfg, [p for p in step.parameters() if p.requires_grad])
    compiled = accel.compile_step(step) if on["compile"] else None
    x = torch.randn(batch_size, 3, image_size, image_size, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, 100, (batch_size,), device=dev)

    def one(i: int) -> None:
        step.iteration = i
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=on["bf16"]):
            loss, _ = step(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step.after_step(i, total)

    first_step_s, step_ms = _time_steps(one, step, steps, dev)
    if cuda:
        peak_mib = (torch.cuda.max_memory_allocated(dev) - baseline) / 2**20
    else:  # growth of the process's peak resident set over the training steps
        peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline) / 1024
    row = {"method": spec, "batch": batch_size, "switches": switches, "compiled": compiled,
           "device": str(dev), "gpu": torch.cuda.get_device_name(dev) if cuda else None,
           "torch": torch.__version__, "step_ms": step_ms, "img_per_s": batch_size / step_ms * 1000,
           "peak_mib": peak_mib, "first_step_s": first_step_s, "threads": torch.get_num_threads()}
    if profile and spec.startswith("adautomix") and not on["compile"]:
        row["profile"] = profile_breakdown(one, 3, dev)
    return row


def _time_steps(one, step: torch.nn.Module, steps: int, dev: torch.device) -> tuple[float, float]:
    """Seconds of the first step ``one(0)`` (it compiles, when compiling); then, after warm-up
    steps, milliseconds per step over ``steps`` steps: back to back on a GPU, as in training,
    the median of single steps on the CPU."""
    cuda, total = dev.type == "cuda", 4 + steps

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    start = time.perf_counter()
    one(0)  # compiles, when compiling
    sync()
    first_step_s = time.perf_counter() - start
    if hasattr(step, "lam_margin"):  # a step with plain mixup in the classifier branch
        saved, step.lam_margin = step.lam_margin, 0.5
        one(1)
        step.lam_margin = saved
    for i in (2, 3):
        one(i)
    sync()
    if cuda:  # back to back, as in training
        start = time.perf_counter()
        for i in range(4, total):
            one(i)
        sync()
        return first_step_s, 1000 * (time.perf_counter() - start) / steps
    times = []
    for i in range(4, total):
        start = time.perf_counter()
        one(i)
        times.append(time.perf_counter() - start)
    return first_step_s, 1000 * statistics.median(times)


def _measure_all(jobs: list[tuple], common: tuple, json_path: str | None) -> list[dict]:
    """Measure ``jobs`` (``(spec, batch, switches)``) one after the other in this process."""
    rows = []
    for spec, batch, switches in jobs:
        try:
            row = _measure(spec, batch, switches, *common)
        except Exception as err:  # noqa: BLE001 - e.g. out of memory, a compiler failure: the others go on
            row = {"method": spec, "batch": batch, "switches": switches,
                   "error": f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"}
        rows.append(row)
        if json_path:
            with open(json_path, "a") as fh:
                fh.write(json.dumps(row) + "\n")
    return rows


def profile_breakdown(run_step, steps: int, device: torch.device) -> dict[str, dict[str, float]]:
    """Milliseconds per step of each labelled part of the step, forward and backward, and the
    rest, from the PyTorch profiler over ``steps`` calls of ``run_step(i)``.

    A backward op belongs to the part whose label enclosed the forward op that created it (the
    profiler records both with the autograd node's sequence number). Returns
    ``{part: {"forward_ms", "backward_ms"}, "rest": {...}, "step": {"total_ms"}}``.
    """
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        for i in range(steps):
            run_step(1000 + i)
        if cuda:
            torch.cuda.synchronize(device)
    wall_us = (time.perf_counter() - start) * 1e6
    events = prof.events()
    time_of = (lambda e: e.device_time_total) if cuda else (lambda e: e.cpu_time_total)  # noqa: E731
    labels = [e for e in events if e.name in PARTS]
    forward, backward, owner = defaultdict(float), defaultdict(float), {}
    for label in labels:
        forward[label.name] += time_of(label)
    for e in events:
        if e.sequence_nr < 0 or e.name.startswith("autograd::") or e.name in PARTS:
            continue
        for label in labels:
            if e.thread == label.thread and label.time_range.start <= e.time_range.start \
                    and e.time_range.end <= label.time_range.end:
                owner[e.sequence_nr] = label.name
                break
    rest_us = 0.0
    for e in events:
        if e.name.startswith("autograd::engine::evaluate_function") and e.sequence_nr in owner:
            backward[owner[e.sequence_nr]] += time_of(e)
        elif e.cpu_parent is None and e.device_type == DeviceType.CPU and e.name not in PARTS \
                and not any(e.thread == label.thread and label.time_range.start <= e.time_range.start
                            and e.time_range.end <= label.time_range.end for label in labels):
            rest_us += time_of(e)  # a top-level op outside every label (its children are in its time)
    # GPU: the kernels' own time (device-side events; a CPU op's device time repeats its kernels')
    total_us = sum(e.self_device_time_total for e in events if e.device_type != DeviceType.CPU) if cuda else wall_us
    out = {name: {"forward_ms": forward[name] / steps / 1000, "backward_ms": backward[name] / steps / 1000}
           for name in PARTS}
    out["rest"] = {"forward_ms": rest_us / steps / 1000, "backward_ms": 0.0}
    out["step"] = {"total_ms": total_us / steps / 1000}
    return out


def run_bench(methods: list[str] | None = None, batch_size: int | list[int] = 64, arch: str = "resnet18",
              width: float = 1.0, steps: int = 20, device: str = "auto", image_size: int = 32,
              threads: int = 0, switches: list[str] | None = None, profile: bool = False,
              json_path: str | None = None) -> list[dict]:
    """Measure each method (default: ``default_methods()``) at each batch size with each set of
    switches (default ``["none"]``), print the table (and the profiles), return the rows. Every
    method's config and every switch set is checked before the first measurement. ``threads`` >
    0 sets torch's CPU threads (0: torch's default). ``json_path``: append each row as a JSON line
    as soon as it is measured."""
    methods = list(methods or default_methods())
    if "vanilla" not in methods:
        methods = ["vanilla", *methods]
    batches = [batch_size] if isinstance(batch_size, int) else list(batch_size)
    switch_sets = list(switches or ["none"])
    for text in switch_sets:
        parse_switches(text)
    for spec in methods:
        for batch in batches:
            _config(spec, batch, arch, width, device, threads)
    common = (arch, width, steps, device, image_size, threads, profile)
    jobs = [(spec, batch, text) for spec in methods for batch in batches for text in switch_sets]
    cuda = device != "cpu" and torch.cuda.is_available()
    # CPU: a process per measurement (peak RSS); CUDA: a process per method
    groups = [[job for job in jobs if job[0] == spec] for spec in methods] if cuda else [[job] for job in jobs]
    ctx = mp.get_context("spawn")
    rows = []
    for group in groups:
        with ctx.Pool(1) as pool:
            measured = pool.apply(_measure_all, (group, common, json_path))
        for row in measured:
            rows.append(row)
            what = f"{row['method']} batch {row['batch']} {row['switches']}"
            print(f"  measured {what}: " + (f"{row['step_ms']:.1f} ms/step" if "step_ms" in row
                                            else row["error"]), flush=True)
    order = {text: i for i, text in enumerate(switch_sets)}
    rows.sort(key=lambda r: (r["batch"], order[r["switches"]]))  # stable: methods keep their order
    print_table(rows, arch, width, image_size, steps)
    if profile:
        for row in rows:
            if "profile" in row:
                print_profile(row)
    return rows


def print_table(rows: list[dict], arch: str, width: float, image_size: int, steps: int) -> None:
    done = [r for r in rows if "step_ms" in r]
    if not done:
        return
    first = done[0]
    cuda = first["device"].startswith("cuda")
    mem_label = "peak MiB (CUDA allocated)" if cuda else "peak RSS growth MiB"
    how = "mean of" if cuda else "median of"
    print(f"\n{arch} width {width}, {image_size}x{image_size}, device {first['device']}"
          f"{' (' + first['gpu'] + ')' if first.get('gpu') else ''}, torch {first['torch']}, "
          f"{first['threads']} threads, {how} {steps} steps")
    print(f"| method | ms/step | x vanilla | img/s | {mem_label} | batch | switches | first step s |")
    print("|---|---:|---:|---:|---:|---:|---|---:|")
    base = {(r["batch"], r["switches"]): r["step_ms"] for r in done if r["method"] == "vanilla"}
    for r in rows:
        if "step_ms" not in r:
            print(f"| {r['method']} | failed | | | | {r['batch']} | {r['switches']} | {r['error']} |")
            continue
        ref = base.get((r["batch"], r["switches"]))
        r["ratio"] = r["step_ms"] / ref if ref else float("nan")
        print(f"| {r['method']} | {r['step_ms']:.1f} | {r['ratio']:.2f} | {r['img_per_s']:.0f} | "
              f"{r['peak_mib']:.0f} | {r['batch']} | {r['switches']} | {r['first_step_s']:.1f} |")


def print_profile(row: dict) -> None:
    p = row["profile"]
    total = p["step"]["total_ms"]
    kind = "GPU" if row["device"].startswith("cuda") else "CPU"
    print(f"\n{row['method']} at batch {row['batch']}, switches {row['switches']}: {kind} time per step "
          f"{total:.1f} ms (PyTorch profiler)")
    print("| part | forward ms | backward ms | share of the step |")
    print("|---|---:|---:|---:|")
    for name, label in [*PARTS.items(), ("rest", "rest: mixing, losses, optimizer, EMA")]:
        f, b = p[name]["forward_ms"], p[name]["backward_ms"]
        print(f"| {label} | {f:.2f} | {b:.2f} | {100 * (f + b) / total:.0f} % |")
