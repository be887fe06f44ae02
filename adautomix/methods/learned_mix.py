"""What AdAutoMix and AutoMix share: a classifier q, a learned mask generator G, and the EMA
teacher k (the "momentum pipeline") through which G is trained.

- AutoMix: Liu et al., "AutoMix: Unveiling the Power of Mixup for Stronger Classifiers",
  ECCV 2022, https://arxiv.org/abs/2103.13027 (``automix.py``)
- AdAutoMix: Qin et al., "Adversarial AutoMixup", ICLR 2024, https://arxiv.org/abs/2312.11954
  (``adautomix.py``; SPEC.md)

Both published models (OpenMixup's ``AutoMixup`` and the authors' AdAutoMix add-on to it) have
the same skeleton, which lives here:

1. λ and partners for two branches: the generator branch (masks with gradient, trained through
   the teacher) and the classifier branch (the same generator's masks, detached; plain mixup
   when λ_1 is within ``lam_margin`` of 0 or 1).
2. G's input is the teacher's stage-3 feature map of the clean batch; G's loss is the teacher's
   mix head on G's mixed images (``use_ema=False``: the current classifier with its parameters
   detached and its BatchNorm statistics untouched).
3. After the optimizer step the teacher's parameters follow q by EMA (``teacher.EMATeacher``).
4. Evaluation: the four heads of the published logs, one_k, mix_k, one_q, mix_q; the headline is
   the teacher's one-hot head (AdAutoMix: SPEC.md; AutoMix: OpenMixup's ``AutoMixup`` infers
   with ``backbone_k`` + ``head_one_k``).

A subclass writes ``losses(x, y) -> (L_cls, L_gen, parts)``: which passes it makes and which
terms it adds are what distinguishes the two methods.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from ..models.cifar_resnet import Classifier
from .teacher import EMATeacher


def mix_images(masks: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    """x̃ = Σ_i M_i ⊙ x_i.

    Args:
        masks: B x N x H x W (or B x N x 1 x 1 for plain mixup).
        sources: B x N x 3 x H x W, source i of sample b.

    Returns:
        B x 3 x H x W mixed images.
    """
    return (masks.unsqueeze(2).to(sources.dtype) * sources).sum(dim=1)


@torch.no_grad()
def mask_stats(masks: torch.Tensor, lam: torch.Tensor) -> dict[str, torch.Tensor]:
    """How far generated masks are from plain mixup (constant masks M_i = λ_i), logged per epoch.

    - ``mask_std``: the spatial std of each mask (per sample and source, over H x W), averaged;
      0 for plain mixup, about 0.5 for a hard binary cut.
    - ``mask_major``: the share of pixels where one source holds more than half of the pixel;
      for plain mixup 1 if some λ_i > 0.5, else 0.
    - ``mask_lam_gap``: mean |M_i − λ_i| over samples, sources and pixels; 0 for plain mixup.

    Args:
        masks: B x N x H x W masks (summing to 1 over N); lam: the N ratios λ_i.

    Returns:
        the three measures as 0-dim float tensors (on the masks' device: no host sync).
    """
    m = masks.detach().float()
    n = m.shape[1]
    return {"mask_std": m.flatten(2).std(dim=2).mean(),
            "mask_major": (m.amax(dim=1) > 0.5).float().mean(),
            "mask_lam_gap": (m - lam.detach().float().view(1, n, 1, 1)).abs().mean()}


class LearnedMixStep(nn.Module):
    """The shared skeleton of a learned-mask step module (see the module docstring).

    Args:
        classifier: q, a ``Classifier`` with heads ``one`` and ``mix``.
        generator: G, ``forward(features: N x [B x C x h x w], lam: N floats, size: (H, W)) -> B x N x H x W``.
        n_mix: N, images mixed per sample (``random_n``: drawn from 2..N each step).
        mix_lambda: λ of Beta(λ, λ).
        use_ema: the EMA teacher; off = G's loss through the current classifier, detached.
        lam_margin, lam_margin_rule: when the classifier branch uses plain mixup (``plain_mix``).
        momentum, momentum_end, momentum_warmup: the EMA schedule (``teacher.ema_momentum``).
    """

    display_name = "learned mix"  # the pictures' title

    def __init__(self, classifier: Classifier, generator: nn.Module, n_mix: int, mix_lambda: float,
                 use_ema: bool = True, lam_margin: float = 0.03, lam_margin_rule: str = "authors",
                 random_n: bool = False, momentum: float = 0.999, momentum_end: float = 0.999999,
                 momentum_warmup: float = 0.1):
        super().__init__()
        self.classifier, self.generator = classifier, generator
        self.teacher = EMATeacher(classifier, momentum, momentum_end, momentum_warmup) if use_ema else None
        self.n_mix, self.random_n, self.mix_lambda = n_mix, random_n, mix_lambda
        self.lam_margin, self.lam_margin_rule = lam_margin, lam_margin_rule
        self.headline = "one_k" if use_ema else "one_q"  # the papers report the teacher's one-hot head
        self.rng = torch.Generator()  # set by the engine each epoch
        self.iteration = 0  # set by the engine before each forward

    # ------------------------------------------------------------------ λ and partners
    def draw(self, batch_size: int, device: torch.device):
        """Mixing ratios and partner permutations of both branches.

        Returns ``(lam_g, lam_c, perms_g, perms_c)``: two length-N float tensors (on ``device``)
        and two lists of N index tensors of length B. For N = 2 (as both published codes) each
        branch draws its own λ ~ Beta and uses (identity, one permutation); for N > 2 one λ
        vector (N Beta draws normalised to sum 1) serves both branches and every π_i is random.
        """
        n = int(torch.randint(2, self.n_mix + 1, (1,), generator=self.rng)) if self.random_n else self.n_mix
        gammas = torch._standard_gamma(torch.full((2 if n == 2 else n, 2), float(self.mix_lambda)),
                                       generator=self.rng)
        betas = gammas[:, 0] / gammas.sum(dim=1)
        identity = torch.arange(batch_size)

        def perm():
            return torch.randperm(batch_size, generator=self.rng)

        if n == 2:
            lam_g = torch.stack([betas[0], 1 - betas[0]])
            lam_c = torch.stack([betas[1], 1 - betas[1]])
            perms_g, perms_c = [identity, perm()], [identity, perm()]
        else:
            lam_g = lam_c = betas / betas.sum()
            perms_g, perms_c = [perm() for _ in range(n)], [perm() for _ in range(n)]
        to = lambda ts: [t.to(device, non_blocking=True) for t in ts]  # noqa: E731
        return (*to([lam_g, lam_c]), to(perms_g), to(perms_c))

    def plain_mix(self, lam_1: float, n: int) -> bool:
        """Whether the classifier branch uses plain mixup (constant masks λ_i) this step.

        N = 2 (both published codes): λ ≤ m or λ ≥ 1−m. N > 2: λ_1 ≤ m or λ_1 > 1−m (the
        AdAutoMix authors' rule), or λ_1 ≤ m or m < 1−λ_1 (``lam_margin_rule="openmixup"``).
        """
        m = self.lam_margin
        if n == 2:
            return lam_1 <= m or lam_1 >= 1 - m
        if self.lam_margin_rule == "openmixup":
            return lam_1 <= m or m < 1 - lam_1
        return lam_1 <= m or lam_1 > 1 - m

    # ------------------------------------------------------------------ the model G plays against
    def _frozen_backbone(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(stage3, pooled) of the teacher, or (``use_ema=False``) of the current classifier with
        its parameters detached and its BatchNorm statistics left untouched."""
        if self.teacher is not None:
            return self.teacher.model.backbone(x)
        backbone = self.classifier.backbone
        state = {k: v.detach() for k, v in backbone.named_parameters()}
        state.update({k: v.clone() for k, v in backbone.named_buffers()})
        return functional_call(backbone, state, (x,))

    def _frozen_mix_head(self, pooled: torch.Tensor) -> torch.Tensor:
        head = self.teacher.model.heads["mix"] if self.teacher is not None else self.classifier.heads["mix"]
        return F.linear(pooled, head.weight.detach(), head.bias.detach())

    # ------------------------------------------------------------------ the step
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss L_cls + L_gen and its (detached) parts: one forward per backward, so DDP
        can wrap the module.

        Args:
            x: B x 3 x H x W clean images; y: B labels.
        """
        loss_cls, loss_gen, parts = self.losses(x, y)
        return loss_cls + loss_gen, parts

    def losses(self, x: torch.Tensor, y: torch.Tensor):
        """``(L_cls, L_gen, parts)``: the classifier's and the generator's losses, each with its
        graph, and every term detached for logging."""
        raise NotImplementedError

    def after_step(self, iteration: int, total_iterations: int) -> dict[str, float]:
        """EMA update of the teacher after optimizer step ``iteration``; returns the momentum."""
        if self.teacher is None:
            return {}
        return {"momentum": self.teacher.update(self.classifier, iteration, total_iterations)}

    @property
    def headline_model(self) -> nn.Module:
        """The model that scores ``headline``: the teacher (or, without it, the classifier)."""
        return self.teacher.model if self.teacher is not None else self.classifier

    def eval_heads(self) -> dict[str, tuple[nn.Module, str]]:
        """The four heads of the published logs: one_k, mix_k, one_q, mix_q."""
        heads = {"one_q": (self.classifier, "one"), "mix_q": (self.classifier, "mix")}
        if self.teacher is not None:
            heads = {"one_k": (self.teacher.model, "one"), "mix_k": (self.teacher.model, "mix"), **heads}
        return heads

    @torch.no_grad()
    def mixed_samples(self, x: torch.Tensor, y: torch.Tensor, seed: int = 0):
        """Sources, generator masks and mixed images for pictures (AdAutoMix's Figures 12-14).

        Returns ``(sources B x N x 3 x H x W, masks B x N x H x W, mixed B x 3 x H x W, λ (N),
        labels B x N)``.
        """
        saved_rng, self.rng = self.rng, torch.Generator().manual_seed(seed)
        try:
            lam_g, _, perms_g, _ = self.draw(len(y), x.device)
        finally:
            self.rng = saved_rng
        feat, _ = self._frozen_backbone(x)
        masks = self.generator([feat[p] for p in perms_g], lam_g.tolist(), x.shape[-2:])
        sources = torch.stack([x[p] for p in perms_g], dim=1)
        labels = torch.stack([y[p] for p in perms_g], dim=1)
        return sources, masks, mix_images(masks, sources), lam_g, labels
