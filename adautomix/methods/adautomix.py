"""One AdAutoMix training step as a single ``nn.Module`` forward (SPEC.md steps 1-9).

Qin et al., "Adversarial AutoMixup", ICLR 2024, https://arxiv.org/abs/2312.11954; the defaults
follow the authors' published CIFAR configs (OpenMixup add-on).

``forward(x, y)`` returns ``(L_cls + L_gen, parts)``: one forward per backward, so DDP can wrap
the module. The teacher runs on the clean batch once; that pass gives both the generator's input
features and the teacher's logits on every source image of the cosine term, and its BatchNorm
statistics are replayed so that the teacher's running statistics follow the published sequence
(clean, generated mix, then N clean updates per step). The classifier's passes run in the
published order (clean, linear mix, generated mix). What AdAutoMix shares with AutoMix (the
draws of λ and partners, the margin rule, the teacher and its EMA update, the four evaluated
heads, the pictures) is ``learned_mix.LearnedMixStep``.

The step is two parts: ``losses`` draws λ and the partners from the CPU generator and decides
on the CPU what they imply, then ``branches`` does everything on the device without waiting for
the host, so that ``torch.compile`` can take it whole (``compile_whole``; ``train.compile``).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch.profiler import record_function

from ..models.cifar_resnet import Classifier
from .generator import MixGenerator
from .learned_mix import LearnedMixStep, mask_stats, mix_images
from .mixing import Targets, mixed_cross_entropy
from .teacher import BatchNormRecorder, has_drop_path


def _label(name: str):
    """A PyTorch-profiler label for a part of the step (``adautomix bench --profile``); none
    inside a compiled graph, which has no place for it."""
    return contextlib.nullcontext() if torch.compiler.is_compiling() else record_function(name)


class AdAutoMixStep(LearnedMixStep):
    """Classifier q, generator G and EMA teacher k, with every loss term and ablation switch.

    Args:
        classifier: q, a ``Classifier`` with heads ``one`` (h1) and ``mix`` (hm).
        generator: G, a ``MixGenerator`` on q's stage-3 channels.
        n_mix: N, images mixed per sample (``random_n``: drawn from 2..N each step).
        alpha: α, weight of L_mce against L_ce.
        beta: β, weight of the adversarial term against the cosine term.
        mix_lambda: λ, Beta(λ, λ) parameter of the mixing ratios.
        use_ce, use_mce, use_cos, use_ema: the module toggles of the paper's ablation.
        adversarial: alternate adversarial (even iterations) and cooperative steps; off = all
            cooperative (AutoMix-like).
        lam_margin: λ_1 near 0 or 1 -> plain mixup masks in the classifier branch.
        lam_margin_rule: ``"authors"``: the authors' repository (λ_1 <= margin or λ_1 >= 1-margin
            for N = 2, λ_1 <= margin or λ_1 > 1-margin for N > 2); ``"openmixup"``: OpenMixup's
            later copy, whose N > 2 test is λ_1 <= margin or margin < 1-λ_1 (true for almost
            every draw, so its classifier branch is almost always plain mixup).
        momentum, momentum_end, momentum_warmup: the EMA schedule (``teacher.ema_momentum``).
        teacher_source_passes: the cosine term's teacher logits on the N sources: ``"single"``
            re-indexes the clean pass (exact without drop-path: a source batch is a permutation
            of the clean one), ``"per_source"`` runs the teacher on each x[π_i] after the
            generated-mix pass as the published code does (independent drop-path draws; the
            BatchNorm replay is then not needed), ``"auto"``: per_source iff the model has
            drop-path (the Swin-T and ConvNeXt-T presets).
    """

    display_name = "AdAutoMix"

    def __init__(self, classifier: Classifier, generator: MixGenerator, n_mix: int = 3,
                 alpha: float = 0.5, beta: float = 0.3, mix_lambda: float = 1.0,
                 use_ce: bool = True, use_mce: bool = True, use_cos: bool = True,
                 use_ema: bool = True, adversarial: bool = True, lam_margin: float = 0.03,
                 lam_margin_rule: str = "authors", random_n: bool = False,
                 momentum: float = 0.999, momentum_end: float = 0.999999, momentum_warmup: float = 0.1,
                 teacher_source_passes: str = "auto"):
        super().__init__(classifier, generator, n_mix=n_mix, mix_lambda=mix_lambda, use_ema=use_ema,
                         lam_margin=lam_margin, lam_margin_rule=lam_margin_rule, random_n=random_n,
                         momentum=momentum, momentum_end=momentum_end, momentum_warmup=momentum_warmup)
        self.alpha = alpha  # α
        self.beta = beta  # β
        self.use_ce, self.use_mce, self.use_cos, self.adversarial = use_ce, use_mce, use_cos, adversarial
        self.per_source = (teacher_source_passes == "per_source"
                           or (teacher_source_passes == "auto" and has_drop_path(classifier)))
        # records the teacher's clean-pass BatchNorm statistics, replayed N times after each step
        # (with per-source passes the teacher makes those N updates itself)
        self.teacher_bn = (BatchNormRecorder(self.teacher.model)
                           if self.teacher is not None and not self.per_source else None)

    @classmethod
    def from_config(cls, classifier: Classifier, m) -> AdAutoMixStep:
        """Build from a ``MethodConfig`` (``cfg.method``) whose momentum schedule is resolved."""
        generator = MixGenerator(classifier.backbone.stage3_channels, reduction=2,
                                 lam_concat=m.lam_concat, upsample=m.upsample)
        return cls(classifier, generator, n_mix=m.n_mix, alpha=m.alpha, beta=m.beta,
                   mix_lambda=m.mix_lambda, use_ce=m.use_ce, use_mce=m.use_mce, use_cos=m.use_cos,
                   use_ema=m.use_ema, adversarial=m.adversarial, lam_margin=m.lam_margin,
                   lam_margin_rule=m.lam_margin_rule, random_n=m.random_n,
                   momentum=m.momentum, momentum_end=m.momentum_end, momentum_warmup=m.momentum_warmup,
                   teacher_source_passes=m.teacher_source_passes)

    # ------------------------------------------------------------------ steps 1-7
    def losses(self, x: torch.Tensor, y: torch.Tensor):
        """``(L_cls, L_gen, parts)``: the classifier's and the generator's losses, each with its
        graph, and every term detached for logging."""
        # 1-2. λ and partners come from the CPU generator; the choices they imply (plain mixup in
        # the classifier branch, an adversarial step) are made here on the CPU, so that the
        # device-side ``branches`` never wait for the host and can be compiled whole
        lam_g, lam_c, perms_g, perms_c = self.draw(len(y), torch.device("cpu"))
        n = len(perms_g)
        plain = self.plain_mix(float(lam_c[0]), n)
        adversarial_step = self.adversarial and self.iteration % 2 == 0

        def to(t: torch.Tensor) -> torch.Tensor:
            return t.to(x.device, non_blocking=True)

        loss_cls, loss_gen, parts = self.branches(
            x, y, to(lam_g), to(lam_c), [to(p) for p in perms_g], [to(p) for p in perms_c], plain,
            to(torch.tensor(adversarial_step)))
        if self.teacher_bn is not None:
            self.teacher_bn.replay(n)  # the published N teacher passes on the source batches x[π_i]
        parts.update(adversarial=torch.tensor(float(adversarial_step)), n_mix=torch.tensor(float(n)))
        return loss_cls, loss_gen, parts

    def branches(self, x: torch.Tensor, y: torch.Tensor, lam_g: torch.Tensor, lam_c: torch.Tensor,
                 perms_g: list[torch.Tensor], perms_c: list[torch.Tensor], plain: bool,
                 adversarial: torch.Tensor):
        """Steps 3-7 on the device, given the draws: ``(L_cls, L_gen, parts)``.

        Args:
            x: B x 3 x H x W clean images; y: B labels.
            lam_g, lam_c: N ratios of the generator and the classifier branch.
            perms_g, perms_c: N partner permutations (length B) of each branch.
            plain: the classifier branch uses plain mixup (constant masks λ_c).
            adversarial: 0-dim bool, this is an adversarial generator step.
        """
        b, n = len(y), len(perms_g)
        # 3. one pass of the frozen model on the clean batch: G's input and the cosine targets
        with torch.no_grad(), _label("adautomix.teacher_clean"):
            if self.teacher_bn is not None:
                self.teacher_bn.start()
            feat, pooled = self._frozen_backbone(x)
            if self.teacher_bn is not None:
                self.teacher_bn.stop()
            source_logits = self._frozen_mix_head(pooled)  # B x K

        # 4-5. generator branch (gradient into G) and classifier branch (masks are constants)
        with _label("adautomix.generator"):
            masks_g = self.generator([feat[p] for p in perms_g], lam_g, x.shape[-2:])  # B x N x H x W
            with torch.no_grad():
                if plain:
                    masks_c = lam_c.view(1, n, 1, 1).expand(b, n, *x.shape[-2:])
                else:
                    masks_c = self.generator([feat[p] for p in perms_c], lam_c, x.shape[-2:])
        sources_g = torch.stack([x[p] for p in perms_g], dim=1)  # B x N x 3 x H x W
        x_mix_g = mix_images(masks_g, sources_g)
        sources_c = torch.stack([x[p] for p in perms_c], dim=1)
        with torch.no_grad():
            x_mix_c = mix_images(masks_c, sources_c)
        targets_c = Targets(torch.stack([y[p] for p in perms_c], dim=1), lam_c.expand(b, n))
        targets_g = Targets(torch.stack([y[p] for p in perms_g], dim=1), lam_g.expand(b, n))

        # 6. classifier loss
        parts = mask_stats(masks_g, lam_g)  # §4: how far G's masks are from plain mixup
        with _label("adautomix.classifier"):
            loss_cls = self._classifier_loss(x, y, lam_c, sources_c, x_mix_c, targets_c, parts)

        # 7. generator loss through the frozen model (gradient reaches G only)
        with _label("adautomix.teacher_mix"):
            logits_g = self._frozen_mix_head(self._frozen_backbone(x_mix_g)[1])
        loss_g = mixed_cross_entropy(logits_g, targets_g)
        if self.per_source:  # the published N passes on x[π_i], each with its own drop-path draw
            with torch.no_grad(), _label("adautomix.teacher_sources"):
                per_source = [self._frozen_mix_head(self._frozen_backbone(x[p])[1]) for p in perms_g]
        else:  # one draw: the clean pass's logits, re-indexed
            per_source = [source_logits[p] for p in perms_g]
        cos = x.new_zeros((), dtype=torch.float32)
        if self.use_cos:
            sims = torch.stack([F.cosine_similarity(logits_g.float(), logits_i.float(), dim=-1)
                                for logits_i in per_source], dim=1)  # B x N
            cos = (sims * lam_g).sum(dim=1).mean()
            parts["cos"] = cos.detach()
        # adversarial: push the teacher's loss up (−β·L_g); minimising +(1−β)·cos pushes the mix's
        # logits AWAY from the sources' (lower similarity), as the published code does; a
        # selection rather than an `if`, so that one compiled graph serves both kinds of step
        loss_gen = torch.where(adversarial, -self.beta * loss_g + (1 - self.beta) * cos, loss_g)
        parts.update(loss_gen_ce=loss_g.detach(), loss_gen=loss_gen.detach(), loss_cls=loss_cls.detach())
        return loss_cls, loss_gen, parts

    def _classifier_loss(self, x: torch.Tensor, y: torch.Tensor, lam_c: torch.Tensor,
                         sources_c: torch.Tensor, x_mix_c: torch.Tensor, targets_c: Targets,
                         parts: dict) -> torch.Tensor:
        """Step 6: L_amce + (1-α)·L_ce + α·L_mce (N = 2: L_amce + L_ce), each term also put in
        ``parts``. q's passes in the published order (clean, linear mix, generated mix): it sets
        q's BatchNorm statistics.

        Args:
            x: B x 3 x H x W clean images; y: B labels; lam_c: N ratios.
            sources_c: B x N x 3 x H x W partners; x_mix_c: B x 3 x H x W their generated mix.
        """
        n = len(lam_c)
        mce_on = self.use_mce and n > 2  # the published code adds L_mce only when N > 2
        loss_cls = x.new_zeros((), dtype=torch.float32)
        if self.use_ce:
            loss_ce = F.cross_entropy(self.classifier(x, head="one").float(), y)
            loss_cls = loss_cls + ((1 - self.alpha) if mce_on else 1.0) * loss_ce
            parts["loss_ce"] = loss_ce.detach()
        if mce_on:
            x_linear = (lam_c.view(1, n, 1, 1, 1).to(x.dtype) * sources_c).sum(dim=1)
            loss_mce = mixed_cross_entropy(self.classifier(x_linear, head="mix"), targets_c)
            loss_cls = loss_cls + self.alpha * loss_mce
            parts["loss_mce"] = loss_mce.detach()
        loss_amce = mixed_cross_entropy(self.classifier(x_mix_c, head="mix"), targets_c)
        parts["loss_amce"] = loss_amce.detach()
        return loss_cls + loss_amce

    def compile_whole(self, **options) -> None:
        """``torch.compile`` the device-side step (``branches``: every network pass, mix and
        loss) as one function; the draws and the BatchNorm replay stay in Python. The step's
        state dict is unchanged (no ``_orig_mod.`` prefixes)."""
        # one graph per N and per kind of classifier branch (plain mixup or generated masks)
        limit = torch._dynamo.config.recompile_limit
        torch._dynamo.config.recompile_limit = max(limit, 2 * (self.n_mix - 1))
        self.branches = torch.compile(self.branches, **options)
