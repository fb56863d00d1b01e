"""TF-GAN's training losses (paper 002 §2.2.1, Eq. 2-5).

Every loss is computed in float32: inputs are cast with ``.float()`` and the
arithmetic runs with autocast disabled, so the functions give float32 results
inside ``torch.autocast`` (bf16 or fp16 activations) as well as outside it.

Our reading, where the paper leaves it open (each function says more):

* **Hinge (Eq. 2)**: the mean over every element (batch, image channel,
  voxel) of ``max(0, (1 - m_roi) ⊙ |x_s - x_s'| - margin)``; voxels inside the
  ROI contribute 0 to the sum but still count in the denominator.
* **Class-wise perceptual (Eq. 3)**: the text's "mean L1 distance ...,
  averaged across layers and classes", i.e. Eq. 3's sum divided by the number
  of (layer, class) pairs (L·C when every class is present), with |·| the mean
  absolute difference over the channels; only classes present in both the
  refined and the real case count.
* **Adversarial (Eq. 4)**: binary cross-entropy on logits; the generator
  minimises the non-saturating ``-log D(G(x))`` instead of
  ``log(1 - D(G(x)))``.
* **λc**: linear from ``start`` at step 0 to ``end`` at step
  ``total_steps - 1``.
* **Modality translator** (more than one modality; docs/interpretations.md,
  "TF-GAN as a modality translator"): the hinge compares only the channels
  the coarse pair took from its healthy scan (``present``), and a translation
  term (:func:`translation_l1`), weighted by ``tfgan.translation_weight``, is
  added to Eq. 5.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

from tumorfab.labels import LESION_LABELS
from tumorfab.synthesis.gan import float32_context
from tumorfab.synthesis.tfaug.intensity_fit import classwise_pooled

#: The keys of ``generator_loss``'s weights (λa, λb, λd of Eq. 5).
WEIGHT_KEYS = ("patch", "global", "percep")


#: Autocast off on a tensor's device, so that the arithmetic stays float32 (shared with Pix2Pix).
_float32 = float32_context


def hinge_l1_outside_roi(
    refined: torch.Tensor, coarse: torch.Tensor, roi: torch.Tensor, margin: float, present: torch.Tensor | None = None
) -> torch.Tensor:
    """Hinge L1 reconstruction loss outside the ROI, paper 002 Eq. 2.

    ``L_hinge = max(0, (1 - m_roi) ⊙ |x_s - x_s'| - margin)``, reduced by the
    mean over all elements of the batch: every case, image channel and voxel
    (the literal reading of Eq. 2 with a mean). ROI voxels
    give ``max(0, -margin) = 0``: they never add to the sum but do count in
    the denominator, so the loss is a mean over the whole crop, not over the
    non-ROI voxels only.

    ``refined`` (x_s) and ``coarse`` (x_s') are [B, C, ...] images; ``roi``
    (m_roi) is a {0, 1} float or bool tensor [B, 1, ...] (1 = tumour, i.e. any
    label > 0), broadcast over the image channels. ``margin`` must be >= 0.

    ``present`` ([B, C], 1 or 0; a modality translator's) restricts the loss
    to the channels the coarse pair took from its healthy scan: the others
    hold no anatomy of that subject to keep (TF-Aug's histogram-matched
    fill), so the mean runs over the present (case, channel) pairs' voxels
    only. Without it, every channel counts. Returns a float32 scalar.
    """
    if margin < 0:
        raise ValueError(f"the hinge margin must be >= 0, got {margin}")
    if roi.shape[1] != 1 or roi.dim() != refined.dim():
        raise ValueError(f"roi must be [B, 1, ...] like the images, got {tuple(roi.shape)} for {tuple(refined.shape)}")
    with _float32(refined):
        outside = 1.0 - roi.float()
        deviation = outside * (refined.float() - coarse.float()).abs()
        hinge = torch.clamp(deviation - margin, min=0.0)
        if present is None:
            return hinge.mean()
        return _channel_mean(hinge, present.float(), torch.ones_like(roi.float()))


def _channel_mean(values: torch.Tensor, channels: torch.Tensor, voxels: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` [B, C, ...] over the chosen channels ``channels``
    [B, C] (1/0) and voxels ``voxels`` [B, 1, ...] (1/0); 0 (kept in the graph) when none is chosen."""
    weight = channels[:, :, None, None, None] * voxels
    return (values * weight).sum() / weight.expand_as(values).sum().clamp(min=1.0)


def translation_l1(output: torch.Tensor, target: torch.Tensor, hidden: torch.Tensor, brain: torch.Tensor) -> torch.Tensor:
    """The translation term of a modality translator: L1 on the channels G had to make.

    ``output`` is G's image of a real case given only some of its channels,
    ``target`` the real case's image (both [B, C, ...]), ``hidden`` [B, C]
    (1 for a channel G was not given), ``brain`` the brain mask [B, 1, ...].
    The mean absolute difference over the hidden channels' brain voxels
    (outside the brain both are -1). Returns a float32 scalar.
    """
    if tuple(hidden.shape) != tuple(output.shape[:2]):
        raise ValueError(f"hidden must be [B, C] = {tuple(output.shape[:2])}, got {tuple(hidden.shape)}")
    with _float32(output):
        difference = (output.float() - target.float()).abs()
        return _channel_mean(difference, hidden.float(), brain.float())


def classwise_perceptual(
    features_fake: Sequence[torch.Tensor],
    labels_fake: torch.Tensor,
    features_real: Sequence[torch.Tensor],
    labels_real: torch.Tensor,
) -> torch.Tensor:
    """Class-wise perceptual loss over the tumour classes, paper 002 Eq. 3.

    Eq. 3: ``L_percep = Σ_{i=1..L} Σ_{c=1..C} |f_r^(i,c) - f_s^(i,c)|`` where
    f^(i,c) is layer i's feature map of F, masked-global-average-pooled over
    class c's mask (``intensity_fit.classwise_pooled``, masks brought to each
    layer's resolution by area interpolation), L = ``len(features_fake)``
    (paper 3) and C = the 3 tumour classes (NCR, ED, ET).

    Our reading follows the paper's text, "the mean L1 distance between real
    and generated features, averaged across layers and classes":

    * |·| is the mean absolute difference over the layer's channels;
    * the result is averaged, not summed, over the (layer, class) pairs, so it
      is Eq. 3's literal sum divided by L·C when every class is present (a
      constant factor that λd absorbs);
    * the real case is random and unpaired, so each side pools its own
      features with its own labels; a class counts only where it is present
      in both the refined and the real case (an absent class has no pooled
      vector), and the average runs over the batch's (case, layer, class)
      triples that count. If none counts (a training crop can miss every
      class the real case has), the loss is a zero that keeps the graph to
      the fake features, so ``backward`` still works.

    ``features_*`` are lists of per-layer tensors [B, C_i, ...] (fake and real
    aligned layer by layer); ``labels_*`` are integer label maps [B, 1, ...]
    at the image resolution. The real batch has the fake batch's size
    (compared case by case) or size 1 (its vectors are compared with every
    fake case). Returns a float32 scalar.
    """
    if len(features_fake) != len(features_real) or not features_fake:
        raise ValueError(
            f"need the same number (> 0) of fake and real feature layers, got {len(features_fake)} and {len(features_real)}"
        )
    batch_fake, batch_real = features_fake[0].shape[0], features_real[0].shape[0]
    if batch_real not in (1, batch_fake):
        raise ValueError(f"the real batch must have size 1 or the fake batch's size {batch_fake}, got {batch_real}")
    with _float32(features_fake[0]):
        pooled_fake, present_fake = classwise_pooled([f.float() for f in features_fake], labels_fake, LESION_LABELS)
        pooled_real, present_real = classwise_pooled([f.float() for f in features_real], labels_real, LESION_LABELS)
        shared = present_fake & present_real  # [B_fake, K], broadcast when B_real == 1
        if not shared.any():
            return sum(f.float().sum() * 0.0 for f in features_fake)
        distances = [(fake - real).abs().mean(-1)[shared] for fake, real in zip(pooled_fake, pooled_real)]
        return torch.cat(distances).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's adversarial loss, paper 002 Eq. 4 (to maximise, negated).

    D maximises ``E[log D(x_r, m)] + E[log(1 - D(G(x_s'), m))]``; this returns
    its negative as a loss to minimise, ``BCE(real, 1) + BCE(fake, 0)``, on
    logits (``binary_cross_entropy_with_logits``: numerically stable, D has
    no sigmoid), each term the mean over its elements. Works for the patch
    map [B, 1, x, y, z] and the global logit [B, 1] alike; call it once per
    head. Float32 scalar.
    """
    with _float32(real_logits):
        real, fake = real_logits.float(), fake_logits.float()
        return F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + F.binary_cross_entropy_with_logits(
            fake, torch.zeros_like(fake)
        )


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's adversarial loss, paper 002 Eq. 4 (G's side).

    G minimises Eq. 4's ``E[log(1 - D(G(x_s'), m))]``; we use the
    non-saturating form ``-E[log D(G(x_s'), m)] = BCE(fake, 1)`` that
    Goodfellow et al. (the paper's [6]) recommend in practice: the same fixed
    point, stronger gradients while D rejects the fakes. On logits, mean over
    the elements; for the patch map and the global logit alike. Float32 scalar.
    """
    with _float32(fake_logits):
        fake = fake_logits.float()
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def lambda_c(step: int, total_steps: int, start: float, end: float) -> float:
    """λc of Eq. 5: "initialized at 10 and linearly decreased to 1 over training".

    Linear in the (0-based) optimisation step: ``start`` at step 0, ``end`` at
    the last step ``total_steps - 1``; steps outside ``[0, total_steps - 1]``
    are clamped (a resumed or overrun schedule stays in range). With
    ``total_steps == 1`` the only step is the first, so it gets ``start``.
    ``start`` and ``end`` come from the config (paper 10 and 1).
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if total_steps == 1:
        return float(start)
    fraction = min(max(step, 0), total_steps - 1) / (total_steps - 1)
    return float(start + (end - start) * fraction)


def generator_loss(
    adv_patch: torch.Tensor,
    adv_global: torch.Tensor,
    hinge: torch.Tensor,
    percep: torch.Tensor,
    weights: Mapping[str, float],
    lambda_c: float,
    translation: torch.Tensor | None = None,
    translation_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The generator's total objective, paper 002 Eq. 5.

    ``L_total = λa·L_adv^patch + λb·L_adv^global + λc·L_hinge + λd·L_percep``
    with ``weights = {"patch": λa, "global": λb, "percep": λd}`` from the
    config (paper 10, 1, 1) and ``lambda_c`` the step's λc (:func:`lambda_c`).
    The adversarial terms are G's (:func:`generator_adversarial_loss`).

    A modality translator adds ``translation_weight · translation``
    (:func:`translation_l1`); with ``translation`` None (one modality) the
    total is Eq. 5 alone.

    Returns the total (a float32 scalar tensor, for ``backward``) and a dict
    of plain floats for the loss CSV: the unweighted terms ``adv_patch``,
    ``adv_global``, ``hinge``, ``percep`` (and ``translation`` when given),
    the weight ``lambda_c`` and ``total``.
    """
    missing = [key for key in WEIGHT_KEYS if key not in weights]
    if missing:
        raise KeyError(f"generator_loss weights miss {missing} (need {list(WEIGHT_KEYS)})")
    terms = {"adv_patch": adv_patch, "adv_global": adv_global, "hinge": hinge, "percep": percep}
    if translation is not None:
        terms["translation"] = translation
    terms = {name: value.float() for name, value in terms.items()}
    total = (
        float(weights["patch"]) * terms["adv_patch"]
        + float(weights["global"]) * terms["adv_global"]
        + float(lambda_c) * terms["hinge"]
        + float(weights["percep"]) * terms["percep"]
    )
    if translation is not None:
        total = total + float(translation_weight) * terms["translation"]
    record = {name: float(value.detach()) for name, value in terms.items()}
    record["lambda_c"] = float(lambda_c)
    record["total"] = float(total.detach())
    return total, record
