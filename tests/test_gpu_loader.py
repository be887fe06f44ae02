"""Specifications of the device-resident loader (adautomix/data/gpu_loader.py): the CPU
pipeline's batches, bit for bit, for every seed, epoch and shard; chosen by ``data.gpu_loader``."""
from __future__ import annotations

import json

import pytest
import torch

from adautomix.config import ConfigError, load_config
from adautomix.data.datasets import DataSpec, TensorData, build_loaders
from adautomix.data.gpu_loader import DeviceTensorLoader, HostToDevice
from adautomix.data.loaders import TensorLoader
from adautomix.engine import train

CPU = torch.device("cpu")


def data(n: int = 53, size: tuple[int, int] = (12, 10), seed: int = 0) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    return TensorData(torch.randint(0, 256, (n, 3, *size), generator=g, dtype=torch.uint8),
                      torch.randint(0, 10, (n,), generator=g))


def spec(padding: int = 2, flip: bool = True) -> DataSpec:
    return DataSpec(10, (0.49, 0.48, 0.45), (0.2, 0.19, 0.21), padding, flip)


def batches(loader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.set_epoch(epoch)
    return [(x.cpu(), y.cpu()) for x, y in loader]


def assert_same_batches(a, b) -> None:
    assert len(a) == len(b) > 0
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.dtype == xb.dtype == torch.float32
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("padding,flip", [(2, True), (4, False), (0, True), (0, False)])
@pytest.mark.parametrize("train_split", [True, False])
def test_device_loader_gives_the_cpu_pipelines_batches_bit_for_bit(padding, flip, train_split):
    d, s = data(), spec(padding, flip)
    for seed in (0, 7):
        cpu = TensorLoader(d, s, 8, train_split, CPU, seed)
        dev = DeviceTensorLoader(d, s, 8, train_split, CPU, seed)
        assert len(dev) == len(cpu)
        for epoch in (0, 3):
            assert_same_batches(batches(dev, epoch), batches(cpu, epoch))


@pytest.mark.parametrize("world_size", [2, 3])
def test_each_rank_gets_the_cpu_pipelines_shard_of_every_global_batch(world_size):
    d, s = data(n=61), spec()
    for rank in range(world_size):
        cpu = TensorLoader(d, s, 12, True, CPU, 5, rank, world_size)
        dev = DeviceTensorLoader(d, s, 12, True, CPU, 5, rank, world_size)
        assert_same_batches(batches(dev, 1), batches(cpu, 1))


def test_the_crops_and_flips_change_with_the_epoch_and_the_seed():
    d, s = data(), spec()
    first = batches(DeviceTensorLoader(d, s, 8, True, CPU, 0), 0)[0][0]
    assert not torch.equal(first, batches(DeviceTensorLoader(d, s, 8, True, CPU, 0), 1)[0][0])
    assert not torch.equal(first, batches(DeviceTensorLoader(d, s, 8, True, CPU, 1), 0)[0][0])


def digits_cfg(tmp_path, *overrides: str):
    return load_config(overrides=["data.limit_train=64", "data.limit_test=32", "train.batch_size=16",
                                  "train.device=cpu", f"out_dir={tmp_path}", *overrides])


def test_data_gpu_loader_picks_the_loader_and_auto_keeps_the_cpu_pipeline_on_a_cpu(tmp_path):
    for setting, kind in [("auto", TensorLoader), ("false", TensorLoader), ("true", DeviceTensorLoader)]:
        train_loader, test_loader, _ = build_loaders(digits_cfg(tmp_path, f"data.gpu_loader={setting}"), CPU)
        assert type(train_loader) is kind and type(test_loader) is kind


def test_a_bad_gpu_loader_value_names_the_key():
    with pytest.raises(ConfigError, match="data.gpu_loader: expected true, false or auto"):
        load_config(overrides=["data.gpu_loader=sometimes"])
    with pytest.raises(ConfigError, match="data.gpu_loader=True is not allowed: auto or false for imagefolder"):
        load_config(overrides=["data.name=imagefolder", "data.root=images", "data.gpu_loader=true"])


def test_a_run_on_the_device_loader_trains_exactly_as_on_the_cpu_pipeline(tmp_path):
    records = []
    for setting in ("false", "true"):
        out = tmp_path / setting
        train(digits_cfg(out, f"data.gpu_loader={setting}", "model.width=0.125", "method.name=mixup", "train.epochs=1"),
              quiet=True)
        record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
        records.append({k: v for k, v in record.items() if k not in ("train_img_per_s", "epoch_seconds")})
    assert records[0] == records[1]


@pytest.mark.cuda
def test_on_cuda_the_device_loader_gives_the_cpu_pipelines_batches_bit_for_bit():
    d, s = data(n=300, size=(32, 32)), spec(4, True)
    cuda = torch.device("cuda")
    dev = DeviceTensorLoader(d, s, 64, True, cuda, 3)
    assert dev.images.is_cuda
    for epoch in (0, 1):
        assert_same_batches(batches(dev, epoch), batches(TensorLoader(d, s, 64, True, CPU, 3), epoch))
    assert_same_batches(batches(DeviceTensorLoader(d, s, 64, False, cuda, 3), 0),
                        batches(TensorLoader(d, s, 64, False, CPU, 3), 0))
    host = HostToDevice(TensorLoader(d, s, 64, True, CPU, 3), cuda)
    assert_same_batches(batches(host, 2), batches(TensorLoader(d, s, 64, True, CPU, 3), 2))


@pytest.mark.cuda
def test_on_cuda_an_epoch_of_the_device_loader_never_waits_for_the_host():
    d, s = data(n=300, size=(32, 32)), spec(4, True)
    loader = DeviceTensorLoader(d, s, 64, True, torch.device("cuda"), 0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any synchronising CUDA call raises
    try:
        n = sum(1 for _ in loader)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert n == len(loader)


@pytest.mark.parametrize("kind", [TensorLoader, DeviceTensorLoader])
def test_an_epoch_continued_at_batch_k_yields_the_rest_of_the_uninterrupted_epoch(kind):
    """What a checkpoint taken inside an epoch relies on: ``set_epoch(epoch, k, rng_state)``, with
    the augmentation generator's state saved after batch k-1, gives batches k.. bit for bit."""
    whole = batches(kind(data(), spec(), 8, True, CPU, seed=3), epoch=2)
    first = kind(data(), spec(), 8, True, CPU, seed=3)
    first.set_epoch(2)
    stream = iter(first)
    for _ in range(3):  # three batches trained, then the checkpoint
        next(stream)
    saved = first.rng_state()
    rest = kind(data(), spec(), 8, True, CPU, seed=3)
    rest.set_epoch(2, 3, saved)
    assert_same_batches([(x.cpu(), y.cpu()) for x, y in rest], whole[3:])
