"""One AutoMix training step as a single ``nn.Module`` forward.

Liu et al., "AutoMix: Unveiling the Power of Mixup for Stronger Classifiers", ECCV 2022,
https://arxiv.org/abs/2103.13027. The paper's numbers come from its authors' implementation,
OpenMixup's ``AutoMixup`` (openmixup/models/classifiers/automix.py); the defaults are its
published CIFAR-100 ResNet-18 config (configs/classification/cifar100/automix/basic/
r18_l2_a2_near_L1_01_mlr5e_2.py, 400 epochs; .../r18/unsampling_modenearest/
r18_l2_a2_near_L1_01_mlr5e_2_ep800.py, 800). Facts used, and where they were read:

- λ ~ Beta(2, 2) (config ``alpha=2.0``), two draws per step: λ_mb for the Mix Block branch, λ_bb
  for the classifier ("backbone") branch, each with its own random permutation π
  (``forward_train``). Sample b mixes x[b] (ratio λ) with x[π(b)] (ratio 1−λ).
- The Mix Block's input is the momentum encoder's stage-3 feature map of the clean batch
  (``feature = backbone_k(img)[0]``, ``mask_layer=2``), a train-mode pass; masks are upsampled by
  2^mask_layer = 4 on CIFAR (``pixel_mixup``), nearest (``unsampling_mode=['nearest']``).
  The block itself: ``mix_block.py``.
- Classifier branch: the Mix Block's masks for (λ_bb, π_bb), detached (``mask_bb.clone().detach()``);
  when λ_bb ≤ m or 1−λ_bb ≤ m, m = ``lam_margin`` = 0.08, the masks become the constants
  (λ_bb, 1−λ_bb): plain mixup ("degenerate to mixup when lam or 1-lam <= 0.08").
  ``mask_adjust=0`` (the mask rescaling it switches) is off in the config and not offered here.
- Losses (``forward_train``; ``head_weights`` all 1):
    L_one_q = CE(head_one_q(f_q(x)), y)                               clean images
    L_mix_q = λ_bb·CE(head_mix_q(f_q(x̃_bb)), y) + (1−λ_bb)·CE(·, y[π_bb])  classifier's mixes
    L_mix_k = λ_mb·CE(head_mix_k(f_k(x̃_mb)), y) + (1−λ_mb)·CE(·, y[π_mb])  through the momentum
              encoder, whose parameters take no gradient: it trains the Mix Block only
    L_mask  = max(|1 − mean(M_2) − λ_mb| − 0.1, 0)                   ``mask_loss_margin=0.1``
    L = L_mix_q + L_one_q + L_mix_k + 0.1·L_mask                       ``mask_loss=0.1``
  q's passes: clean (``forward_q``: one-hot first), then x̃_bb; k's: clean (the features), then
  x̃_mb (``forward_k``). Those are all the train-mode passes, so the teacher's BatchNorm
  statistics take one clean and one mixed update per step, as here (no replay, unlike AdAutoMix).
- Momentum encoder: backbone and both heads, an exact copy of q at the start, parameters updated
  after every iteration by θ_k ← m·θ_k + (1−m)·θ_q (``momentum_update``); m from 0.999 to
  0.999999 by ``CosineScheduleHook(end_momentum=0.999999, adjust_scope=[0.1, 1.0],
  warming_up="constant")``: the same schedule as AdAutoMix's, so ``teacher.ema_momentum``,
  ``teacher.PUBLISHED_MOMENTUM`` and the run-length scaling apply unchanged.
- Evaluation: the four heads one_k, mix_k, one_q, mix_q (``simple_test``); inference uses
  backbone_k + head_one_k (``forward_inference``): the headline is one_k.
- Optimiser (config): SGD lr 0.1, momentum 0.9, wd 1e-4, one group for the classifier and the Mix
  Block, cosine to min_lr 0.05, batch 100.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.cifar_resnet import Classifier
from .learned_mix import LearnedMixStep, mask_stats, mix_images
from .mix_block import MixBlock, mask_loss
from .mixing import Targets, mixed_cross_entropy


class AutoMixStep(LearnedMixStep):
    """Classifier q, Mix Block M and momentum encoder k, trained end to end in one step.

    Args:
        classifier: q, a ``Classifier`` with heads ``one`` and ``mix``.
        mix_block: M, a ``MixBlock`` on q's stage-3 channels.
        mix_lambda: α of Beta(α, α) (published: 2.0).
        mask_loss_weight: weight of L_mask in M's loss (published: 0.1).
        mask_loss_margin: ε of L_mask (published: 0.1).
        lam_margin: λ_bb within this of 0 or 1 -> plain mixup in the classifier branch
            (published: 0.08).
        use_ema: the momentum encoder; off = M's loss through the current classifier with its
            parameters detached (not a published setting).
        momentum, momentum_end, momentum_warmup: the EMA schedule (``teacher.ema_momentum``).
    """

    display_name = "AutoMix"

    def __init__(self, classifier: Classifier, mix_block: MixBlock, mix_lambda: float = 2.0,
                 mask_loss_weight: float = 0.1, mask_loss_margin: float = 0.1,
                 lam_margin: float = 0.08, use_ema: bool = True, momentum: float = 0.999,
                 momentum_end: float = 0.999999, momentum_warmup: float = 0.1):
        super().__init__(classifier, mix_block, n_mix=2, mix_lambda=mix_lambda, use_ema=use_ema,
                         lam_margin=lam_margin, momentum=momentum, momentum_end=momentum_end,
                         momentum_warmup=momentum_warmup)
        self.mask_loss_weight, self.mask_loss_margin = mask_loss_weight, mask_loss_margin

    @classmethod
    def from_config(cls, classifier: Classifier, m) -> AutoMixStep:
        """Build from a ``MethodConfig`` (``cfg.method``) whose momentum schedule is resolved."""
        mix_block = MixBlock(classifier.backbone.stage3_channels, reduction=2,
                             lam_concat=m.lam_concat, upsample=m.upsample)
        return cls(classifier, mix_block, mix_lambda=m.mix_lambda, mask_loss_weight=m.mask_loss_weight,
                   mask_loss_margin=m.mask_loss_margin, lam_margin=m.lam_margin, use_ema=m.use_ema,
                   momentum=m.momentum, momentum_end=m.momentum_end, momentum_warmup=m.momentum_warmup)

    def losses(self, x: torch.Tensor, y: torch.Tensor):
        """``(L_cls, L_gen, parts)``: L_one_q + L_mix_q (gradient into q only) and
        L_mix_k + w·L_mask (gradient into the Mix Block only), and every term detached."""
        b = len(y)
        # λ_mb, λ_bb ~ Beta(α, α), each branch with (identity, its own π)
        lam_g, lam_c, perms_g, perms_c = self.draw(b, x.device)
        lam_g_list, lam_c_list = lam_g.tolist(), lam_c.tolist()

        with torch.no_grad():  # k's clean pass (train mode: its first BatchNorm update)
            feat, _ = self._frozen_backbone(x)
        masks_g = self.generator([feat[p] for p in perms_g], lam_g_list, x.shape[-2:])  # B x 2 x H x W
        x_mix_g = mix_images(masks_g, torch.stack([x[p] for p in perms_g], dim=1))
        with torch.no_grad():
            if self.plain_mix(lam_c_list[0], 2):
                masks_c = lam_c.view(1, 2, 1, 1)
            else:
                masks_c = self.generator([feat[p] for p in perms_c], lam_c_list, x.shape[-2:])
            x_mix_c = mix_images(masks_c, torch.stack([x[p] for p in perms_c], dim=1))
        targets_c = Targets(torch.stack([y[p] for p in perms_c], dim=1), lam_c.expand(b, 2))
        targets_g = Targets(torch.stack([y[p] for p in perms_g], dim=1), lam_g.expand(b, 2))

        # the classifier: clean, then its mixes (the published order of q's passes)
        loss_one_q = F.cross_entropy(self.classifier(x, head="one").float(), y)
        loss_mix_q = mixed_cross_entropy(self.classifier(x_mix_c, head="mix"), targets_c)
        loss_cls = loss_one_q + loss_mix_q

        # the Mix Block, through the frozen momentum encoder (its second BatchNorm update)
        loss_mix_k = mixed_cross_entropy(self._frozen_mix_head(self._frozen_backbone(x_mix_g)[1]), targets_g)
        loss_mask = mask_loss(masks_g, lam_g[0], self.mask_loss_margin)
        loss_gen = loss_mix_k + self.mask_loss_weight * loss_mask
        parts = {"loss_one_q": loss_one_q, "loss_mix_q": loss_mix_q, "loss_mix_k": loss_mix_k,
                 "loss_mask": loss_mask, "loss_cls": loss_cls, "loss_gen": loss_gen}
        parts = {k: v.detach() for k, v in parts.items()}
        parts.update(mask_stats(masks_g, lam_g))  # how far the Mix Block's masks are from plain mixup
        return loss_cls, loss_gen, parts
