"""Pix2Pix's objective (Isola et al. 2017, Eq. 1-4; paper 002 §3.2.1 (2): "cGAN + L1").

``G* = arg min_G max_D L_cGAN(G, D) + λ·L_L1(G)`` with, for a label map ``y``
and its real image ``x``:

* D: ``0.5·(BCE(D(y, x), 1) + BCE(D(y, G(y)), 0))``. pix2pix halves D's
  objective ("we divide the objective by 2 while optimizing D, which slows
  down the rate at which D learns relative to G"); BCE on logits, the mean
  over the PatchGAN map's elements.
* G: ``BCE(D(y, G(y)), 1) + λ_L1·|G(y) - x|₁``: the non-saturating
  ``-log D(y, G(y))`` pix2pix trains G with, and the L1 distance, the mean
  absolute difference over every element (batch, channel, voxel), as
  pix2pix's ``nn.L1Loss``; λ_L1 = 100 in pix2pix (config
  ``pix2pix.lambda_l1``).

Every loss is computed in float32 (inputs cast with ``.float()``, autocast
off: ``tumorfab.synthesis.gan.float32_context``), inside ``torch.autocast``
as outside it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tumorfab.synthesis.gan import float32_context


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's loss: ``0.5·(BCE(real, 1) + BCE(fake, 0))`` on logits (pix2pix halves D's objective). Float32 scalar."""
    with float32_context(real_logits):
        real, fake = real_logits.float(), fake_logits.float()
        return 0.5 * (
            F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        )


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """G's adversarial term, the non-saturating ``BCE(D(y, G(y)), 1)`` on logits. Float32 scalar."""
    with float32_context(fake_logits):
        fake = fake_logits.float()
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def l1_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """``|G(y) - x|₁``: the mean absolute difference over every element. Float32 scalar."""
    with float32_context(fake):
        return (fake.float() - real.float()).abs().mean()


def generator_loss(fake_logits: torch.Tensor, fake: torch.Tensor, real: torch.Tensor, lambda_l1: float) -> tuple[torch.Tensor, dict[str, float]]:
    """G's objective ``BCE(D(y, G(y)), 1) + λ_L1·|G(y) - x|₁``.

    Returns the total (a float32 scalar tensor, for ``backward``) and the
    loss row's values as plain floats: ``g_total``, ``g_adv`` and ``l1``
    (unweighted).
    """
    adversarial, l1 = generator_adversarial_loss(fake_logits), l1_loss(fake, real)
    total = adversarial + float(lambda_l1) * l1
    return total, {"g_total": float(total.detach()), "g_adv": float(adversarial.detach()), "l1": float(l1.detach())}
