"""AdAutoMix (Adversarial AutoMixup, Qin et al., ICLR 2024, https://arxiv.org/abs/2312.11954)
and the mixup methods it is compared with."""

__version__ = "0.1.0"
