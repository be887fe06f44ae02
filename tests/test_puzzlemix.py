"""Specifications of PuzzleMix (adautomix.methods.puzzlemix): the block mask, the transport, the
targets, the saliency pass and its place under DDP, and training from the CLI and on Ray Train.

Expected values are computed here from the paper's definitions with plain loops, not by calling
the functions under test.
"""
from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from adautomix.config import ConfigError, load_config
from adautomix.engine import build_step
from adautomix.methods.puzzlemix import (
    PuzzleMixStep,
    assign_exact,
    assign_paper,
    draw_puzzle,
    graph_cut_masks,
    input_saliency,
    mask_energy_terms,
    puzzlemix,
    transport_blocks,
    transport_cost,
)
from adautomix.models.cifar_resnet import build_classifier

B, C, H, W = 8, 3, 32, 32
DEFAULTS = dict(mix_lambda=1.0, block_num_min=2, block_num_max=16, mix_levels=3,
                label_smoothness=1.2, data_smoothness=0.5, prior_weight=0.2, neigh_size=4,
                transport=True, transport_weight=0.8, transport_size=4, transport_solver="paper")


def batch(seed: int = 0, size: int = B):
    """Images with distinct values everywhere (so every block is unique) and a random saliency
    with a few strong peaks (so that the transport has salient blocks to move)."""
    g = torch.Generator().manual_seed(seed)
    saliency = torch.rand(size, H * W, generator=g) ** 4
    peaks = torch.randint(0, H * W, (size, 3), generator=g)
    saliency.scatter_(1, peaks, 100.0)
    return torch.rand(size, C, H, W, generator=g), torch.arange(size), saliency.view(size, H, W)


def tiles(image: torch.Tensor, size: int) -> list[torch.Tensor]:
    """The size x size tiles of a C x H x W image, row-major."""
    return [image[:, r:r + size, c:c + size] for r in range(0, image.shape[1], size)
            for c in range(0, image.shape[2], size)]


# ------------------------------------------------------------------------------------ the mask


@pytest.mark.parametrize("seed", range(6))
def test_mask_is_constant_on_each_block_of_the_drawn_grid_and_takes_the_mix_levels(seed):
    x, _, saliency = batch(seed)
    d = draw_puzzle(x, saliency, torch.Generator().manual_seed(seed), **DEFAULTS)
    assert d.block_num in (2, 4, 8, 16)
    side = W // d.block_num
    assert d.mask.shape == (B, 1, H, W)
    for b in range(B):
        for tile in tiles(d.mask[b], side):
            assert bool((tile == tile.flatten()[0]).all())
        assert set(d.mask[b].unique().tolist()) <= {0.0, 0.5, 1.0}


def test_block_numbers_cover_the_powers_of_two_in_the_configured_range():
    x, _, saliency = batch(0, size=2)
    params = {**DEFAULTS, "block_num_min": 4, "block_num_max": 8, "transport": False}
    drawn = {draw_puzzle(x, saliency, torch.Generator().manual_seed(s), **params).block_num for s in range(20)}
    assert drawn == {4, 8}


def energy_tables(s_x, s_p, x_pix, p_pix, lam, n, beta, gamma, eta, neigh):
    """The paper's mask energy (module docstring, step 2) for binary masks (z = 1: x shown),
    as tables written out with loops: ``unary[p][z]`` per block and ``pair[(p, q)][z_p][z_q]``
    per pair of neighbours."""
    cells = H // n // neigh

    def pooled(img):  # C x (H/neigh) x (W/neigh): neigh x neigh pixel cells
        return img.reshape(C, H // neigh, neigh, W // neigh, neigh).mean(dim=(2, 4))

    src = {1: pooled(x_pix), 0: pooled(p_pix)}
    beta_n = beta / n / 16
    unary = {}
    for i, j in itertools.product(range(n), repeat=2):
        for z in (0, 1):
            lost = float(s_p[i, j]) if z else float(s_x[i, j])
            unary[i, j, z] = lost - eta / n ** 2 * math.log((lam if z else 1 - lam) + 1e-8)
    pair = {}
    for i, j in itertools.product(range(n), repeat=2):
        for di, dj in ((1, 0), (0, 1)):
            if i + di >= n or j + dj >= n:
                continue
            for za, zb in itertools.product((0, 1), repeat=2):
                a, b = src[za], src[zb]
                jumps = []
                for t in range(cells):
                    if di:  # last cell row of block (i, j) against the first of (i+1, j)
                        r, c = (i + 1) * cells - 1, j * cells + t
                        jumps.append(float((a[:, r, c] - b[:, r + 1, c]).abs().mean()))
                    else:
                        r, c = i * cells + t, (j + 1) * cells - 1
                        jumps.append(float((a[:, r, c] - b[:, r, c + 1]).abs().mean()))
                phi = sum(jumps) / cells
                pair[(i, j), (i + di, j + dj), za, zb] = beta_n * (za - zb) ** 2 + beta_n * gamma * phi
    return unary, pair


def energies(masks: np.ndarray, unary, pair, n) -> np.ndarray:
    """Energy of each of M binary masks (M x n x n) from the tables."""
    e = np.zeros(len(masks))
    for (i, j, z), u in unary.items():
        e += u * (masks[:, i, j] == z)
    for ((i, j), (k, l), za, zb), v in pair.items():
        e += v * ((masks[:, i, j] == za) & (masks[:, k, l] == zb))
    return e


@pytest.mark.parametrize("n,seed", [(2, 0), (2, 1), (4, 2), (4, 3)])
def test_with_two_levels_the_graph_cut_finds_the_minimum_of_the_paper_energy(n, seed):
    """Two levels make the graph cut exact: its mask's energy is the least over all 2^(n²) masks."""
    g = torch.Generator().manual_seed(seed)
    # images constant on the 4 x 4 cells the data term compares, so that its jumps are large
    x_pix, p_pix = torch.rand(2, C, H // 4, W // 4, generator=g).repeat_interleave(4, -2).repeat_interleave(4, -1)
    s_x, s_p = torch.rand(2, n, n, generator=g) ** 3
    s_x, s_p = s_x / s_x.sum(), s_p / s_p.sum()
    lam = float(torch.rand(1, generator=g))
    beta, gamma, eta, neigh = 30.0, 1.0, 0.2, 4  # β large enough that smoothness matters at n = 2, 4
    energy = mask_energy_terms(s_x[None], s_p[None], x_pix[None], p_pix[None], lam,
                               label_smoothness=beta, data_smoothness=gamma, prior_weight=eta,
                               neigh_size=neigh, mix_levels=2)
    mask = graph_cut_masks(energy, mix_levels=2)[0].numpy()
    unary, pair = energy_tables(s_x, s_p, x_pix, p_pix, lam, n, beta, gamma, eta, neigh)
    every = np.array(list(itertools.product((0, 1), repeat=n * n))).reshape(-1, n, n)
    all_energies = energies(every, unary, pair, n)
    got = energies(mask[None], unary, pair, n)[0]
    assert got == pytest.approx(all_energies.min(), abs=1e-4)
    # the solver's form of the energy differs from the paper's by a constant only
    z = torch.from_numpy(every).double()
    solver_form = ((z * energy.unary_x[0] + (1 - z) * energy.unary_partner[0]).sum(dim=(1, 2))
                   + (energy.edge_v[0] * (z[:, 1:] - z[:, :-1]) ** 2).sum(dim=(1, 2))
                   + (energy.edge_h[0] * (z[:, :, 1:] - z[:, :, :-1]) ** 2).sum(dim=(1, 2))
                   + torch.from_numpy(energy.prior[(1 - every).reshape(len(every), -1)].sum(1)))
    offset = solver_form.numpy() - all_energies
    assert np.ptp(offset) < 1e-6


def test_without_transport_a_concentrated_saliency_keeps_its_region():
    """Each image's saliency sits in its own quadrant: the mask shows x on x's quadrant and the
    partner on the partner's."""
    x, _, _ = batch(0, size=4)
    quadrants = [(0, 0), (0, 16), (16, 0), (16, 16)]
    saliency = torch.full((4, H, W), 1e-3)
    for b, (r, c) in enumerate(quadrants):
        saliency[b, r:r + 16, c:c + 16] = 1.0
    params = {**DEFAULTS, "transport": False, "block_num_min": 4, "block_num_max": 4,
              "mix_lambda": 1e4}  # λ ≈ 0.5
    for seed in range(4):
        d = draw_puzzle(x, saliency, torch.Generator().manual_seed(seed), **params)
        for b in range(4):
            p = int(d.perm[b])
            if p == b:
                continue
            (r, c), (pr, pc) = quadrants[b], quadrants[p]
            assert bool((d.mask[b, 0, r:r + 16, c:c + 16] == 1).all())
            assert bool((d.mask[b, 0, pr:pr + 16, pc:pc + 16] == 0).all())


# ------------------------------------------------------------------------------------ transport


@pytest.mark.parametrize("solver", ["paper", "exact"])
@pytest.mark.parametrize("seed", range(4))
def test_transport_moves_whole_blocks_one_to_one(solver, seed):
    """Each source after transport is a permutation of its own blocks of the transport grid."""
    x, _, saliency = batch(seed)
    d = draw_puzzle(x, saliency, torch.Generator().manual_seed(seed),
                    **{**DEFAULTS, "transport_solver": solver})
    side = min(4, W // d.block_num)
    for b in range(B):
        for moved, source in ((d.x_moved[b], x[b]), (d.partner_moved[b], x[int(d.perm[b])])):
            index = {t.numpy().tobytes(): i for i, t in enumerate(tiles(source, side))}
            assert len(index) == (W // side) ** 2  # every tile of the random source is unique
            found = [index.get(t.numpy().tobytes()) for t in tiles(moved, side)]
            assert sorted(found, key=lambda i: -1 if i is None else i) == list(range(len(index)))


@pytest.mark.parametrize("solver", ["paper", "exact"])
def test_transport_brings_a_hidden_salient_block_to_where_the_mask_shows_its_source(solver):
    """4 x 4 blocks, x shown on the left half only, its saliency in one block on the right."""
    n = 4
    shown = torch.zeros(1, n, n, dtype=torch.bool)
    shown[:, :, :2] = True
    saliency = torch.full((1, n, n), 1e-4)
    saliency[0, 1, 3] = 1.0
    saliency = saliency / saliency.sum()
    cost = transport_cost(saliency.flatten(1), shown.flatten(1), cost_weight=0.8)
    sources = assign_paper(cost, n) if solver == "paper" else assign_exact(cost)
    assert sorted(sources[0].tolist()) == list(range(n * n))
    position = sources[0].tolist().index(1 * n + 3)  # where block (1, 3) went
    assert shown.flatten()[position]


def test_transport_blocks_puts_the_chosen_block_at_each_position():
    x, _, _ = batch(0, size=2)
    side, n = 8, 4
    sources = torch.stack([torch.randperm(n * n, generator=torch.Generator().manual_seed(s)) for s in (0, 1)])
    moved = transport_blocks(x, sources, side)
    for b in range(2):
        for j in range(n * n):
            i = int(sources[b, j])
            r, c, sr, sc = (j // n) * side, (j % n) * side, (i // n) * side, (i % n) * side
            assert torch.equal(moved[b, :, r:r + side, c:c + side], x[b, :, sr:sr + side, sc:sc + side])


def test_exact_transport_is_the_cheapest_permutation():
    g = torch.Generator().manual_seed(0)
    n = 2
    for _ in range(5):
        s = torch.rand(1, n * n, generator=g)
        shown = torch.rand(1, n * n, generator=g) > 0.5
        cost = transport_cost(s / s.sum(), shown, cost_weight=0.8)[0]
        # cost[i, j]: block i to position j, with C from the positions written out
        for i, j in itertools.product(range(4), repeat=2):
            distance = ((i // 2 - j // 2) ** 2 + (i % 2 - j % 2) ** 2) / (n - 1) ** 2
            assert float(cost[i, j]) == pytest.approx(0.8 * distance - float(s[0, i] / s.sum()) * float(shown[0, j]))
        best = min(sum(float(cost[perm[j], j]) for j in range(4)) for perm in itertools.permutations(range(4)))
        got = assign_exact(cost[None])[0]
        assert sum(float(cost[got[j], j]) for j in range(4)) == pytest.approx(best)


# ------------------------------------------------------------------------------------ the mix


@pytest.mark.parametrize("transport", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_targets_sum_to_one_and_lambda_is_the_share_of_x_in_the_mixed_image(transport, seed):
    x, y, saliency = batch(seed)
    params = {**DEFAULTS, "transport": transport}
    x_mixed, targets = puzzlemix(x, y, torch.Generator().manual_seed(seed), saliency, **params)
    d = draw_puzzle(x, saliency, torch.Generator().manual_seed(seed), **params)
    assert torch.allclose(targets.weights.sum(dim=1), torch.ones(B))
    assert torch.equal(targets.labels, torch.stack([y, y[d.perm]], dim=1))
    for b in range(B):
        first, second = d.x_moved[b], d.partner_moved[b]
        if not transport:
            assert torch.equal(first, x[b]) and torch.equal(second, x[int(d.perm[b])])
        if int(d.perm[b]) == b:
            continue  # a sample mixed with itself
        # each pixel's share of x, read back from the mixed image: (x̃ − x_1) / (x_0 − x_1)
        share = ((x_mixed[b] - second) / (first - second)).mean(dim=0)  # H x W
        assert float(targets.weights[b, 0]) == pytest.approx(float(share.mean()), abs=1e-4)
        assert float(targets.weights[b, 0]) == pytest.approx(float(d.mask[b].mean()), abs=1e-6)


def test_the_same_seed_draws_the_same_mix_and_another_seed_another():
    x, y, saliency = batch(0)
    mixes = [puzzlemix(x, y, torch.Generator().manual_seed(s), saliency, **DEFAULTS) for s in (3, 3, 4)]
    assert torch.equal(mixes[0][0], mixes[1][0]) and torch.equal(mixes[0][1].weights, mixes[1][1].weights)
    assert not torch.equal(mixes[0][0], mixes[2][0])


# ------------------------------------------------------------------------------------ saliency


def tiny_classifier():
    torch.manual_seed(0)
    return build_classifier("resnet18", 0.125, 10)


def test_saliency_is_the_channel_norm_of_the_input_gradient_and_leaves_the_model_alone():
    model = tiny_classifier().train()
    x, y = torch.randn(4, C, H, W), torch.tensor([0, 1, 2, 3])
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    saliency = input_saliency(model, x, y)
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())  # eval mode
    # the same gradient taken the plain way: backward into a leaf image, eval mode
    model.eval()
    leaf = x.clone().requires_grad_(True)
    F.cross_entropy(model(leaf), y).backward()
    expected = torch.sqrt((leaf.grad ** 2).sum(dim=1))
    assert saliency.shape == (4, H, W)
    assert torch.allclose(saliency, expected, rtol=1e-5, atol=1e-9)


def counting_hook(calls: list, bucket):
    """A DDP communication hook that records each gradient bucket it is asked to all-reduce."""
    calls.append(bucket.index())
    fut = torch.futures.Future()
    fut.set_result(bucket.buffer())  # one process: the all-reduced bucket is the bucket
    return fut


def puzzlemix_step(seed: int = 0) -> PuzzleMixStep:
    cfg = load_config(overrides={"method.name": "puzzlemix", "model.width": 0.125, "data.name": "digits"})
    torch.manual_seed(seed)
    step = build_step(cfg, 10)
    step.rng = torch.Generator().manual_seed(seed)
    return step


def test_the_saliency_pass_under_ddp_starts_no_all_reduce_and_one_backward_gives_the_plain_gradients(tmp_path):
    x, y = torch.randn(8, C, H, W, generator=torch.Generator().manual_seed(1)), torch.arange(8) % 10
    plain = puzzlemix_step().train()
    plain(x, y)[0].backward()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        calls = []
        ddp = torch.nn.parallel.DistributedDataParallel(puzzlemix_step().train())
        ddp.register_comm_hook(calls, counting_hook)
        loss, _ = ddp(x, y)
        assert calls == []  # the saliency pass inside forward reduced nothing
        assert all(p.grad is None for p in ddp.parameters())  # nor wrote any parameter gradient
        loss.backward()
        assert len(calls) >= 1 and len(calls) == len(set(calls))  # each bucket once
        for (name, p), q in zip(plain.named_parameters(), ddp.module.parameters()):
            assert torch.allclose(p.grad, q.grad, rtol=1e-5, atol=1e-7), name
    finally:
        dist.destroy_process_group()


# ------------------------------------------------------------------------------------ config


@pytest.mark.parametrize("override,key", [
    ("method.block_num_max=12", "method.block_num_max"),
    ("method.block_num_min=1", "method.block_num_min"),
    ("method.mix_levels=1", "method.mix_levels"),
    ("method.data_smoothness=2", "method.data_smoothness"),
    ("method.transport_solver=hungarian", "method.transport_solver"),
    ("method.neigh_size=3", "method.neigh_size"),
    ("method.transport_size=3", "method.transport_size"),
])
def test_bad_puzzlemix_settings_are_config_errors_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(overrides=["method.name=puzzlemix", override])


# ------------------------------------------------------------------------------------ end to end

TINY = ["data.name=digits", "model.width=0.125", "data.limit_train=256", "data.limit_test=128",
        "train.batch_size=32", "train.threads=1", "train.epochs=1", "method.name=puzzlemix"]


def test_puzzlemix_trains_on_digits_from_the_cli(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "adautomix", "train", *TINY, f"out_dir={out}"],
                          capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert record["epoch"] == 1 and math.isfinite(record["loss"])
    assert 0 < record["mix_ratio"] < 1  # the mean λ of the epoch's mixes
    assert json.loads((out / "metrics.json").read_text())["epochs_done"] == 1
