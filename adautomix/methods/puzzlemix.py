"""PuzzleMix: a saliency-keeping block mask from a graph cut, and each source's blocks moved by
optimal transport to where the mask shows them.

Kim, Choo, Song, "Puzzle Mix: Exploiting Saliency and Local Statistics for Optimal Mixup",
ICML 2020, https://arxiv.org/abs/2009.06962. The defaults are the authors' published CIFAR-100
command (their repository snu-mllab/PuzzleMix).

For a sample x_0 = x and its partner x_1 = x[π], on an n × n grid of blocks (n drawn each step):

1. **Saliency** s_k: the L2 norm over channels of ∂CE(f(x), y)/∂x, one input-gradient pass of the
   classifier in eval mode (``input_saliency``), averaged over each block and normalised to sum 1.
2. **Mask** z ∈ {0, 1/(m−1), ..., 1}^{n×n}, x's share of each block, minimising
       Σ_p z_p·s_1,p + (1 − z_p)·s_0,p                  saliency each source loses
     + β' Σ_{p~q} (z_p − z_q)²                          label smoothness, β' = β / (16 n)
     + β'γ Σ_{p~q} φ_pq                                 data smoothness (below)
     − η / n² Σ_p log Binomial(z_p·(m−1); m−1, λ)      prior: the mask's mean near λ ~ Beta(α, α)
   where φ_pq is the mean absolute pixel jump across the boundary of neighbouring blocks p, q
   (pixels in [0, 1], pooled ``neigh_size`` × ``neigh_size``) for the sources they show. This is
   the energy for two levels; for m > 2 the released code extends φ (the two-source table split
   into a part linear in z and a (z_p − z_q)² part) and so does ``mask_energy_terms``. Solved by α-β
   swap graph cuts with pyGCO (``gco-wrapper``), as the authors do: (z_p − z_q)² is a semi-metric,
   not a metric, so α-expansion does not apply.
3. **Transport**: for each source k, a one-to-one map Π_k of its blocks to positions minimising
       ⟨Π_k, ξ·C − s_k v_kᵀ⟩,   C_ij = ‖pos_i − pos_j‖² / (n−1)²
   with v_k the positions where source k is shown (z > 0 for x, z < 1 for the partner): salient
   blocks move to where they are seen, near where they were. ``transport_solver="paper"`` is the
   paper's parallel approximate solver, ``"exact"`` the Hungarian method (SciPy). The transport
   grid is ``transport_size`` pixels per block (finer than the mask's blocks when smaller).
4. x̃ = z ⊙ Π_0(x) + (1 − z) ⊙ Π_1(x[π]); the targets weigh y by λ_b = mean(z_b) and y[π] by
   1 − λ_b.

The graph cut runs per sample on the CPU; the rest is batched torch. On a CPU most of the
extra time is the saliency pass (a forward and a backward to the images); the graph cuts and
the transport of a batch of 64 take a few hundred milliseconds together.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .mixing import MixStep, Targets, mixed_cross_entropy, sample_beta

GCO_SCALE = 100_000  # energies are passed to pyGCO as integers: this many units per 1.0


# ---------------------------------------------------------------------------------- 1. saliency
def input_saliency(classifier: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """‖∂CE(f(x), y)/∂x‖₂ over channels, with ``classifier`` in eval mode (its BatchNorm
    statistics are used, not updated), as the published CIFAR setting does.

    The gradient is taken with ``torch.autograd.grad`` with respect to the input only: no
    parameter's ``.grad`` is written and no parameter hook runs, so under DistributedDataParallel
    this pass starts no gradient all-reduce.

    Args:
        classifier: the model trained (called as ``classifier(x)`` -> B x K logits).
        x: B x C x H x W images; y: B labels.

    Returns:
        B x H x W, float32.
    """
    was_training = classifier.training
    classifier.eval()
    try:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            loss = F.cross_entropy(classifier(x).float(), y)
            (grad,) = torch.autograd.grad(loss, x)
    finally:
        classifier.train(was_training)
    return grad.float().norm(dim=1)


def block_saliency(saliency: torch.Tensor, block_size: int) -> torch.Tensor:
    """Mean saliency of each ``block_size`` block, normalised to sum 1 per image.

    Args:
        saliency: B x H x W (non-negative).

    Returns:
        B x n x n with n = H / block_size.
    """
    pooled = F.avg_pool2d(saliency[:, None], block_size)[:, 0]
    total = pooled.sum(dim=(1, 2), keepdim=True)
    return pooled / total.clamp_min(torch.finfo(pooled.dtype).tiny)


# ---------------------------------------------------------------------------------- 2. mask
def boundary_jumps(upper: torch.Tensor, lower: torch.Tensor, block_num: int,
                   neigh_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """φ: pixel discontinuity across each block boundary when one block shows ``upper`` and its
    lower (right) neighbour shows ``lower``.

    Both images are pooled ``neigh_size`` × ``neigh_size``; φ is the mean over channels and over
    the pooled cells along the shared edge of |last cell row of the upper block − first cell row
    of the lower block| (columns likewise for left / right).

    Args:
        upper, lower: B x C x H x W images in pixel units ([0, 1]).
        block_num: n, blocks per side; ``neigh_size`` must divide H / n.

    Returns:
        ``(vertical, horizontal)``: B x (n−1) x n (block (i, j) over (i+1, j)) and
        B x n x (n−1) (block (i, j) left of (i, j+1)).
    """
    a, b = F.avg_pool2d(upper, neigh_size), F.avg_pool2d(lower, neigh_size)
    cells = a.shape[-1] // block_num  # pooled cells per block side
    bsz = a.shape[0]
    vertical = (a[:, :, cells - 1:-1:cells, :] - b[:, :, cells::cells, :]).abs().mean(dim=1)
    horizontal = (a[:, :, :, cells - 1:-1:cells] - b[:, :, :, cells::cells]).abs().mean(dim=1)
    vertical = vertical.reshape(bsz, block_num - 1, block_num, cells).mean(dim=-1)
    horizontal = horizontal.reshape(bsz, block_num, cells, block_num - 1).mean(dim=2)
    return vertical, horizontal


def level_prior(lam: float, mix_levels: int) -> np.ndarray:
    """−log p(z = 1 − l/(m−1)) for l = 0..m−1: x's share in m−1 steps is Binomial(m−1, λ)."""
    steps = mix_levels - 1
    p = [math.comb(steps, steps - l) * lam ** (steps - l) * (1 - lam) ** l for l in range(mix_levels)]
    return -np.log(np.asarray(p) + 1e-8)


class MaskEnergy(NamedTuple):
    """The graph-cut energy of a batch in the released code's form: for each sample,
    E(z) = Σ_p z_p·unary_x[p] + (1 − z_p)·unary_partner[p] + prior[l_p]
         + Σ_{p~q} edge[p, q]·(z_p − z_q)².

    unary_x, unary_partner: B x n x n (the cost of showing x, resp. the partner, in block p);
    edge_v: B x (n−1) x n, edge_h: B x n x (n−1); prior: m (per block, indexed by level l, where
    z = 1 − l/(m−1)).
    """

    unary_x: torch.Tensor
    unary_partner: torch.Tensor
    edge_v: torch.Tensor
    edge_h: torch.Tensor
    prior: np.ndarray


def mask_energy_terms(s_x: torch.Tensor, s_partner: torch.Tensor, x_pixels: torch.Tensor,
                      partner_pixels: torch.Tensor, lam: float, *, label_smoothness: float,
                      data_smoothness: float, prior_weight: float, neigh_size: int,
                      mix_levels: int) -> MaskEnergy:
    """The terms of the mask energy (module docstring, step 2).

    The data-smoothness table θ(a, b) = β'γ·φ_pq(a, b) of each pair of neighbours (a, b: the
    source each shows) is split exactly, for two sources, into per-block costs
    (θ(a, 0) + θ(a, 1)) / 2 and (θ(0, b) + θ(1, b)) / 2 and a weight
    (θ(0, 1) + θ(1, 0) − θ(0, 0) − θ(1, 1)) / 2 on [a ≠ b], then extended to fractional levels
    (linear in z, (z_p − z_q)²), as the released code does.

    Args:
        s_x, s_partner: B x n x n block saliency, each summing to 1.
        x_pixels, partner_pixels: B x C x H x W in pixel units.
        lam: λ, the prior's mixing ratio.
    """
    n = s_x.shape[-1]
    beta = label_smoothness / n / 16  # β', the released code's normalisation
    # φ for (upper, lower) showing (x, x), (x, partner), (partner, x), (partner, partner)
    jumps = {(a, b): boundary_jumps(pa, pb, n, neigh_size)
             for a, pa in ((0, x_pixels), (1, partner_pixels))
             for b, pb in ((0, x_pixels), (1, partner_pixels))}
    unary = [s_partner.clone(), s_x.clone()]  # unary[a]: cost of showing source a (0 = x)
    edges = []
    for axis, (head, tail) in enumerate(((np.s_[:, :-1, :], np.s_[:, 1:, :]),
                                         (np.s_[:, :, :-1], np.s_[:, :, 1:]))):
        theta = {ab: beta * data_smoothness * j[axis] for ab, j in jumps.items()}
        for a in (0, 1):
            unary[a][head] += (theta[a, 0] + theta[a, 1]) / 2  # the upper / left block shows a
            unary[a][tail] += (theta[0, a] + theta[1, a]) / 2  # the lower / right block shows a
        edges.append(beta + (theta[0, 1] + theta[1, 0] - theta[0, 0] - theta[1, 1]) / 2)
    prior = prior_weight * level_prior(lam, mix_levels) / n ** 2
    return MaskEnergy(unary[0], unary[1], edges[0], edges[1], prior)


def graph_cut_masks(energy: MaskEnergy, mix_levels: int) -> torch.Tensor:
    """Minimise each sample's mask energy by α-β swap graph cuts (pyGCO).

    Returns:
        B x n x n masks with values in {0, 1/(m−1), ..., 1} (x's share), on the CPU.
    """
    import gco  # gco-wrapper (pyGCO)

    steps = mix_levels - 1
    z = 1 - np.arange(mix_levels) / steps  # x's share at level l
    unary_x, unary_partner = energy.unary_x.double().cpu().numpy(), energy.unary_partner.double().cpu().numpy()
    unary = z * unary_x[..., None] + (1 - z) * unary_partner[..., None] + energy.prior  # B x n x n x m
    levels = np.arange(mix_levels)
    pairwise = (levels[:, None] - levels[None, :]) ** 2  # (z_p − z_q)² = this / steps²
    edge_v = energy.edge_v.double().cpu().numpy() / steps ** 2
    edge_h = energy.edge_h.double().cpu().numpy() / steps ** 2

    def to_int(a: np.ndarray) -> np.ndarray:
        return np.rint(a * GCO_SCALE).astype(np.int32)

    masks = []
    for b in range(unary.shape[0]):
        labels = gco.cut_grid_graph(to_int(unary[b]), pairwise.astype(np.int32), to_int(edge_v[b]),
                                    to_int(edge_h[b]), algorithm="swap")
        masks.append(z[labels].reshape(unary.shape[1:3]))
    return torch.from_numpy(np.stack(masks)).float()


# ---------------------------------------------------------------------------------- 3. transport
def position_cost(n: int, device=None) -> torch.Tensor:
    """C_ij = ‖pos_i − pos_j‖² / (n−1)² between the blocks of an n × n grid (row-major), N x N."""
    rows, cols = torch.meshgrid(torch.arange(n, device=device), torch.arange(n, device=device),
                                indexing="ij")
    pos = torch.stack([rows.flatten(), cols.flatten()], dim=1).float()
    return torch.cdist(pos, pos).square() / (n - 1) ** 2


def transport_cost(saliency: torch.Tensor, shown: torch.Tensor, cost_weight: float) -> torch.Tensor:
    """ξ·C_ij − s_i·v_j: moving block i to position j costs its distance and gains its saliency
    where the position is shown.

    Args:
        saliency: B x N block saliency of the source; shown: B x N, 1 where the source is shown.

    Returns:
        B x N x N (row: the block, column: the position).
    """
    n = math.isqrt(saliency.shape[1])
    distance = position_cost(n, saliency.device)
    return cost_weight * distance - saliency[:, :, None] * shown[:, None, :].float()


def assign_paper(cost: torch.Tensor, iterations: int) -> torch.Tensor:
    """The paper's parallel approximate assignment: every block claims its cheapest position;
    where several claim one, the cheapest claim wins and each loser's cost of that position grows
    by 1; ``iterations`` rounds (the blocks per side, as in the released code).

    Once won, a position stays won (its winner's costs never change), and with ξ > 0 every
    position where the source is shown is claimed in the first round by its own block, so the
    positions left empty are hidden ones. They receive the blocks left unplaced, in index order
    (the released code leaves them black), which makes the result a permutation; the mixed image
    does not depend on it.

    Args:
        cost: B x N x N (row: block, column: position).

    Returns:
        B x N long: for each position, the index of the block moved there (a permutation).
    """
    cost = cost.clone()
    bsz, n, _ = cost.shape
    blocks = torch.arange(n, device=cost.device).expand(bsz, n)
    for _ in range(iterations):
        claim_cost, claimed = cost.min(dim=-1)  # B x N: block i claims position claimed[i]
        best = torch.full_like(claim_cost, float("inf")).scatter_reduce(
            1, claimed, claim_cost, "amin")  # the cheapest claim on each position
        cheapest = torch.where(claim_cost == best.gather(1, claimed), blocks, n)
        winner = torch.full_like(blocks, n).scatter_reduce(1, claimed, cheapest, "amin")  # ties: lowest index
        won = winner.gather(1, claimed) == blocks  # B x N: block i won its claim
        cost.view(bsz, -1).scatter_add_(1, blocks * n + claimed, (~won).to(cost.dtype))  # losers pay 1
    filled, placed = winner < n, won  # B x N positions, B x N blocks
    holes = torch.argsort(filled.int(), dim=1, stable=True)  # empty positions first, in order
    spare = torch.argsort(placed.int(), dim=1, stable=True)  # unplaced blocks first, in order
    completion = torch.empty_like(winner).scatter_(1, holes, spare)
    return torch.where(filled, winner, completion)


def assign_exact(cost: torch.Tensor) -> torch.Tensor:
    """The minimum-cost one-to-one assignment of each sample (Hungarian method, SciPy).

    Args:
        cost: B x N x N.

    Returns:
        B x N long: for each position, the index of the block moved there.
    """
    from scipy.optimize import linear_sum_assignment

    out = torch.empty(cost.shape[:2], dtype=torch.long)
    for b, c in enumerate(cost.detach().double().cpu().numpy()):
        rows, cols = linear_sum_assignment(c)
        out[b, torch.from_numpy(cols)] = torch.from_numpy(rows)
    return out.to(cost.device)


def transport_blocks(images: torch.Tensor, sources: torch.Tensor, block_size: int) -> torch.Tensor:
    """Move whole blocks: position j of the output takes block ``sources[:, j]`` of the input.

    Args:
        images: B x C x H x W; sources: B x N long with N = (H / block_size)².
    """
    bsz, c, h, w = images.shape
    n = h // block_size
    blocks = images.reshape(bsz, c, n, block_size, n, block_size).permute(0, 2, 4, 1, 3, 5)
    blocks = blocks.reshape(bsz, n * n, c, block_size, block_size)
    index = sources.to(images.device)[:, :, None, None, None].expand_as(blocks)
    moved = blocks.gather(1, index).reshape(bsz, n, n, c, block_size, block_size)
    return moved.permute(0, 3, 1, 4, 2, 5).reshape(bsz, c, h, w)


# ---------------------------------------------------------------------------------- 4. the mix
class PuzzleSample(NamedTuple):
    """One PuzzleMix draw for a batch.

    perm: B, the partner of each sample; lam: the λ ~ Beta drawn for the prior;
    block_num: n; mask: B x 1 x H x W, x's share of each pixel (constant on the n × n blocks);
    x_moved, partner_moved: the two sources after transport (B x C x H x W).
    """

    perm: torch.Tensor
    lam: float
    block_num: int
    mask: torch.Tensor
    x_moved: torch.Tensor
    partner_moved: torch.Tensor


def draw_puzzle(x: torch.Tensor, saliency: torch.Tensor, rng: torch.Generator, *,
                pixel_std=(1.0, 1.0, 1.0), mix_lambda: float = 1.0, block_num_min: int = 2,
                block_num_max: int = 16, mix_levels: int = 3, label_smoothness: float = 1.2,
                data_smoothness: float = 0.5, prior_weight: float = 0.2, neigh_size: int = 4,
                transport: bool = True, transport_weight: float = 0.8, transport_size: int = 4,
                transport_solver: str = "paper") -> PuzzleSample:
    """Partner, mask and transported sources of one PuzzleMix step (module docstring, 2-3).

    Args:
        x: B x C x H x W normalised images; saliency: B x H x W (``input_saliency``).
        rng: CPU generator for λ, π and n.
        pixel_std: per-channel std of the normalisation: the data-smoothness term compares
            pixels in [0, 1] (the mean cancels in differences).
        mix_lambda: α of Beta(α, α) for λ.
        block_num_min, block_num_max: n is drawn uniformly from the powers of two in this range.
        mix_levels: m, the mask takes m levels (the released code's ``n_labels``).
        label_smoothness, data_smoothness, prior_weight: β, γ, η.
        neigh_size: side of the pixel cells compared across block boundaries.
        transport: rearrange the blocks by optimal transport.
        transport_weight: ξ, weight of the distance moved (the released code's ``t_eps``).
        transport_size: block side of the transport grid in pixels (0 = the mask's blocks).
        transport_solver: ``"paper"`` (approximate, parallel) or ``"exact"`` (Hungarian).
    """
    bsz, _, height, width = x.shape
    lam = sample_beta(mix_lambda, rng)
    perm = torch.randperm(bsz, generator=rng)
    lo, hi = int(math.log2(block_num_min)), int(math.log2(block_num_max))
    n = 2 ** int(torch.randint(lo, hi + 1, (1,), generator=rng))
    block_size = width // n
    perm_d = perm.to(x.device)

    saliency = saliency.detach().float()
    s_x = block_saliency(saliency, block_size)
    std = torch.as_tensor(pixel_std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    pixels = x.detach().float() * std
    energy = mask_energy_terms(s_x, s_x[perm_d], pixels, pixels[perm_d], lam,
                               label_smoothness=label_smoothness, data_smoothness=data_smoothness,
                               prior_weight=prior_weight, neigh_size=min(neigh_size, block_size),
                               mix_levels=mix_levels)
    mask = graph_cut_masks(energy, mix_levels).to(x.device)[:, None]  # B x 1 x n x n

    x_moved, partner_moved = x, x[perm_d]
    if transport:
        t_size = block_size if transport_size == 0 else min(transport_size, block_size)
        t_num = width // t_size
        t_mask = F.interpolate(mask, size=t_num, mode="nearest").flatten(1)  # B x N
        s_t = block_saliency(saliency, t_size).flatten(1)
        moved = []
        for source, s, shown in ((x, s_t, t_mask > 0), (x[perm_d], s_t[perm_d], t_mask < 1)):
            cost = transport_cost(s, shown, transport_weight)
            sources = assign_paper(cost, t_num) if transport_solver == "paper" else assign_exact(cost)
            moved.append(transport_blocks(source, sources, t_size))
        x_moved, partner_moved = moved
    mask = F.interpolate(mask, size=(height, width), mode="nearest")
    return PuzzleSample(perm_d, lam, n, mask, x_moved, partner_moved)


def puzzlemix(x: torch.Tensor, y: torch.Tensor, rng: torch.Generator, saliency: torch.Tensor,
              **params) -> tuple[torch.Tensor, Targets]:
    """x̃ = z ⊙ Π_0(x) + (1 − z) ⊙ Π_1(x[π]); targets (y, λ_b), (y[π], 1 − λ_b), λ_b = mean(z_b).

    Args:
        x: B x C x H x W; y: B labels; rng: CPU generator; saliency: B x H x W.
        params: the keyword arguments of ``draw_puzzle``.
    """
    d = draw_puzzle(x, saliency, rng, **params)
    x_mixed = d.mask * d.x_moved + (1 - d.mask) * d.partner_moved
    lam = d.mask.mean(dim=(1, 2, 3))
    targets = Targets(torch.stack([y, y[d.perm]], dim=1), torch.stack([lam, 1 - lam], dim=1))
    return x_mixed, targets


class PuzzleMixStep(MixStep):
    """One PuzzleMix training step: saliency pass, mask and transport, mixed cross-entropy.

    ``forward`` is everything that needs gradients (one forward per backward), so DDP can wrap the
    module; the saliency pass inside it differentiates to the input only (``input_saliency``).

    Args:
        classifier: the model trained (its ``one`` head).
        params: ``draw_puzzle``'s keyword arguments (``mix_lambda``, the ``method.*`` keys and
            ``pixel_std``).
    """

    def __init__(self, classifier: nn.Module, params: dict):
        super().__init__(classifier, puzzlemix, params)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        saliency = input_saliency(self.classifier, x, y)
        x_mixed, targets = puzzlemix(x, y, self.rng, saliency, **self.params)
        loss = mixed_cross_entropy(self.classifier(x_mixed), targets)
        return loss, {"loss_ce": loss.detach(), "mix_ratio": targets.weights[:, 0].mean()}
