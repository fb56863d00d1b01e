"""Fitting TF-Aug's intensity modification I(x) = a·x + b (paper 002 §2.1, §3.1.2).

Paper: "A frozen feature extractor F, adapted from the encoder of our baseline
segmentation model, is used to extract embeddings f_s' and f_r from the
synthetic image x_s' and a real image x_r. These parameters are optimized by
minimizing the L1 distance |f_s' − f_r|"; "Stage 1 (TF-Aug) was trained for
200 epochs using stochastic gradient descent (SGD) with a learning rate of
1×10⁻²".

Our reading, where the paper leaves it open:

* **Parameters**: one ``(a, b)`` per tumour subregion (NCR 1, ED 2, ET 3) and
  modality, started at ``(1, 0)`` (the blurred healthy tissue itself). Plain
  SGD (no momentum, no weight decay), ``lr`` and ``epochs`` from the config.
* **F**: the frozen first ``n_stages`` stages of the baseline nnU-Net encoder
  (``tumorfab.segmentation.features.load_feature_extractor``); any
  ``torch.nn.Module`` with ``forward(image, brainmask) -> list[Tensor]`` (image
  [B, C, D, H, W] in [-1, 1], background -1; brain mask [B, 1, D, H, W] float
  {0, 1}) will do. Gradients flow through F to the image, not into F.
* **Pooling**: the synthetic and the real scans are unpaired, so features are
  compared per class, not voxel by voxel: for each stage and each subregion
  c, the feature map is averaged over the class-c mask brought to the
  stage's resolution by area interpolation (a masked global average pool,
  the same pooling paper 002 uses for its class-wise perceptual loss, Eq. 3).
* **Target**: the pooled vectors of *all* real training cases, averaged per
  class over the cases that have the class, computed once (F is frozen and
  the real images do not change): a stable target rather than a random real
  case per step.
* **Loss**: mean absolute difference between a synthetic case's pooled
  vector and the target, averaged over channels, then over the (case, stage,
  class) triples where the class is present in that synthetic case and in the
  real cohort.
* **Sampling**: a fixed pool of ``n_pairs`` coarse pairs drawn like the
  generated cases with the paper's augmentation only (``masks`` settings; no
  lesion controls and no mass effect, so changing a control does not refit
  a, b): pair j uses ``SeedSequence(seed, spawn_key=(FIT_STREAM, j))``. The
  blur does not depend on (a, b), so each pair is blurred once. An epoch is
  one pass over the pool in a reshuffled order (``default_rng(seed)``), in
  minibatches of ``batch_size``.
* **Patches**: F sees a cube of ``patch_size`` voxels centred on the lesion's
  centroid (the real tumour's for real cases), padded with background where
  it leaves the grid: nnU-Net's patch size for the paper (128), which holds
  nearly all of a BraTS tumour, instead of whole 240×240×155 volumes. F
  z-scores its input as nnU-Net does, here over the patch's brain voxels
  rather than the whole brain: the same for real and synthetic patches, and
  close to the per-image statistics when the patch covers most of the brain.
* **Several sequences** (the paper is T1-only; docs/interpretations.md, "TF-Aug
  on several sequences"): F is the baseline trained on every configured
  channel, so it sees all C. ``(a, b)`` are fitted for each channel that at
  least one healthy scan has; in a pair whose healthy scan lacks a channel, F
  sees there the fill of ``tfaug.fill``: the pair's current synthetic t1n
  mapped onto the real training cases' pooled brain quantiles of that channel,
  by the histogram map of the pair's whole blurred t1n volume (the map is
  taken once, at (1, 0): the lesion moves it little). The fill follows the
  current (a, b) of t1n but is a constant for the gradient: a monotone map
  cannot invert a contrast, and its mismatch must not pull t1n's (a, b)
  away from what fits T1. With several channels the JSON also keeps those
  quantiles for every channel but t1n (generation fills from them without
  reading a real case); a channel no healthy scan has has no (a, b) there.

The result, a small JSON file (:func:`save_intensity`), is an output of its
own: generating more cases reuses it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from tumorfab.casefolder import load_case
from tumorfab.device import module_device
from tumorfab.io import save_text
from tumorfab.labels import LABEL_KEYS, LESION_LABELS
from tumorfab.synthesis.histogram_match import brain_quantiles, quantile_map
from tumorfab.synthesis.tfaug.blend import blur_in_roi
from tumorfab.synthesis.tfaug.controls import LocationRule
from tumorfab.synthesis.tfaug.fill import FILL_SOURCE, fill_patch, healthy_channels
from tumorfab.synthesis.tfaug.masks import MaskBank, place_lesions
from tumorfab.synthesis.tfaug.settings import IntensityFitSettings, LocationSpec, MaskAugmentation

log = logging.getLogger(__name__)

#: Spawn key of the fit's random stream (generation uses SeedSequence([seed, i])).
FIT_STREAM = 7


# --- Pooling and loss -------------------------------------------------------------
def classwise_pooled(
    features: Sequence[torch.Tensor], labels: torch.Tensor, classes: Sequence[int] = LESION_LABELS
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Masked global-average-pooled features per stage and class.

    ``labels`` is [B, 1, D, H, W] (integer labels). Returns, per stage, a
    tensor [B, K, C_stage] (K = len(classes)) and a presence tensor [B, K]
    (the class has voxels in the case). The class masks are brought to each
    stage's resolution by area interpolation (fractional weights).
    """
    onehot = torch.cat([(labels == c) for c in classes], dim=1).float()
    present = onehot.flatten(2).sum(-1) > 0
    pooled = []
    for feature in features:
        weights = F.interpolate(onehot, size=feature.shape[2:], mode="area")
        total = weights.flatten(2).sum(-1)  # [B, K]
        summed = torch.einsum("bkn,bcn->bkc", weights.flatten(2), feature.flatten(2))
        pooled.append(summed / total.clamp_min(1e-8)[..., None])
    return pooled, present


def pooled_l1(
    pooled: Sequence[torch.Tensor], present: torch.Tensor, target: Sequence[torch.Tensor], target_present: torch.Tensor
) -> torch.Tensor:
    """Mean L1 over channels, averaged over (case, stage, class) present on both sides."""
    valid = present & target_present[None]
    if not valid.any():
        raise ValueError("no tumour class is present in both the synthetic batch and the real cases")
    losses = []
    for stage, goal in zip(pooled, target):
        distance = (stage - goal[None]).abs().mean(-1)  # [B, K]
        losses.append(distance[valid])
    return torch.cat(losses).mean()


# --- Patches ---------------------------------------------------------------------
def crop_patch(volume: np.ndarray, centre: Sequence[float], size: int, fill: float) -> np.ndarray:
    """A cube of ``size`` voxels (last three axes) centred at ``centre``, padded with ``fill``."""
    spatial = volume.shape[-3:]
    out = np.full((*volume.shape[:-3], size, size, size), fill, dtype=volume.dtype)
    src, dst = [], []
    for c, n in zip(centre, spatial):
        start = int(round(float(c))) - size // 2
        lo, hi = max(start, 0), min(start + size, n)
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out[(..., *dst)] = volume[(..., *src)]
    return out


#: Histogram-map knots ``(x, y)`` of a pair's missing channels, by channel index.
FillMaps = dict[int, tuple[np.ndarray, np.ndarray]]


@dataclass
class Patches:
    """A stack of patches: images [N, C, P, P, P] (for the pool: healthy outside
    the ROI, blurred inside), brain masks and labels [N, 1, P, P, P].

    ``fill_maps[n]``: patch n's channels that its healthy scan lacks, made from
    channel ``fill_source`` (``tfaug.fill``); empty when none lacks one."""

    images: torch.Tensor
    brain: torch.Tensor
    labels: torch.Tensor
    fill_maps: tuple[FillMaps, ...] = ()
    fill_source: int = 0

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @classmethod
    def stack(
        cls, items: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], fill_maps: Sequence[FillMaps] = (), fill_source: int = 0
    ) -> Patches:
        return cls(
            torch.from_numpy(np.stack([i[0] for i in items]).astype(np.float32)),
            torch.from_numpy(np.stack([i[1][None] for i in items]).astype(np.float32)),
            torch.from_numpy(np.stack([i[2][None] for i in items]).astype(np.uint8)),
            tuple(fill_maps) if any(fill_maps) else (),
            fill_source,
        )

    def with_fills(self, images: torch.Tensor, index) -> torch.Tensor:
        """``images`` (patches ``index``, after ``I``) with their missing channels filled (no gradient)."""
        if not self.fill_maps:
            return images
        pairs = range(len(self))[index] if isinstance(index, slice) else [int(i) for i in index]
        out = images.clone()
        for row, pair in enumerate(pairs):
            for channel, knots in self.fill_maps[pair].items():
                out[row, channel] = fill_patch(images[row, self.fill_source], self.brain[pair, 0].to(images.device), knots)
        return out


def _centroid(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0)


def real_data(
    case_dirs: Sequence[str | os.PathLike], modalities: Sequence[str], patch_size: int, quantile_channels: Sequence[str] = ()
) -> tuple[MaskBank, Patches, dict[str, np.ndarray]]:
    """The mask bank, the tumour-centred patches and the pooled brain quantiles
    of ``quantile_channels`` (``histogram_match.brain_quantiles``) of the real
    training cases, read once.

    Cases without a lesion give no patch (and no bank mask); every case gives
    its brain voxels to the quantiles.
    """
    items = []
    brain_values = {m: [] for m in quantile_channels}

    def cases():
        for case_dir in case_dirs:
            case = load_case(case_dir, modalities)
            images, brain, seg = case.stacked(modalities), case.brainmask > 0, case.seg
            for m, values in brain_values.items():
                values.append(case.images[m][brain])
            if (seg > 0).any():
                centre = _centroid(seg > 0)
                items.append(
                    (
                        crop_patch(images, centre, patch_size, -1.0),
                        crop_patch(brain, centre, patch_size, False),
                        crop_patch(seg, centre, patch_size, 0),
                    )
                )
            yield Path(case_dir).name, seg, case.affine

    bank = MaskBank.from_arrays(cases())  # one full volume in memory at a time
    if not items:
        raise ValueError("the intensity fit needs at least one real training case with a lesion")
    quantiles = {m: brain_quantiles((v, np.ones(v.shape, bool)) for v in values) for m, values in brain_values.items()}
    return bank, Patches.stack(items), quantiles


def synthetic_pool(
    bank: MaskBank,
    healthy_dirs: Sequence[str | os.PathLike],
    modalities: Sequence[str],
    n_pairs: int,
    settings: MaskAugmentation,
    sigma: float,
    patch_size: int,
    seed: int,
    reference_quantiles: Mapping[str, np.ndarray] | None = None,
) -> Patches:
    """``n_pairs`` coarse pairs before ``I``: blurred ROI on a random healthy scan, as patches.

    A channel the drawn healthy scan lacks is background here and gets the
    histogram map of the pair's blurred t1n onto ``reference_quantiles`` of
    the channel (filled at each step by :meth:`Patches.with_fills`).
    """
    modalities = list(modalities)
    present_by_dir = healthy_channels(healthy_dirs, modalities)
    items, fill_maps = [], []
    for j in range(n_pairs):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(FIT_STREAM, j)))
        pick = int(rng.integers(len(healthy_dirs)))
        healthy_dir, present = healthy_dirs[pick], present_by_dir[pick]
        case = load_case(healthy_dir, present, with_seg=False)
        images, brain = case.stacked(present), case.brainmask > 0
        bank.grid.check_same(brain.shape, case.affine, str(healthy_dir))
        # The paper's placement, whatever tfaug.controls says: one lesion, any location, any size.
        rule = LocationRule(LocationSpec("any"), bank.grid, brain, None, settings.shift_mm)
        placed = place_lesions(bank, brain, rng, settings, rule, size_ml=None, n_lesions=1)
        base = np.full((len(modalities), *brain.shape), -1.0, dtype=np.float32)
        base[[modalities.index(m) for m in present]] = blur_in_roi(images, brain, placed.labels > 0, sigma, placed.boxes)
        fill_maps.append(
            {
                c: quantile_map(base[modalities.index(FILL_SOURCE)], brain, reference_quantiles[m])
                for c, m in enumerate(modalities)
                if m not in present
            }
        )
        centre = _centroid(placed.labels > 0)
        items.append(
            (crop_patch(base, centre, patch_size, -1.0), crop_patch(brain, centre, patch_size, False), crop_patch(placed.labels, centre, patch_size, 0))
        )
    fill_source = modalities.index(FILL_SOURCE) if FILL_SOURCE in modalities else 0
    return Patches.stack(items, fill_maps, fill_source)


# --- The fit ---------------------------------------------------------------------
def apply_linear(base: torch.Tensor, labels: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``I`` on a batch: ``clamp(a_c·x + b_c, -1, 1)`` inside subregion c, ``x`` elsewhere.

    ``a``, ``b``: [C, 3]; same operation as ``blend.modify_intensity`` without controls.
    """
    out = base
    for k, label in enumerate(LESION_LABELS):
        scale = a[:, k].view(1, -1, 1, 1, 1)
        shift = b[:, k].view(1, -1, 1, 1, 1)
        out = torch.where(labels == label, torch.clamp(scale * base + shift, -1.0, 1.0), out)
    return out


@dataclass
class FitResult:
    a: np.ndarray  # [C, 3]
    b: np.ndarray
    loss_start: float
    loss_end: float
    loss_per_epoch: list[float] = field(default_factory=list)


def _pooled(extractor, patches: Patches, index, device, a=None, b=None):
    images = patches.images[index].to(device)
    labels = patches.labels[index].to(device)
    if a is not None:
        images = patches.with_fills(apply_linear(images, labels, a, b), index)
    return classwise_pooled(extractor(images, patches.brain[index].to(device)), labels)


def real_target(extractor: torch.nn.Module, real: Patches, batch_size: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per stage [K, C] mean of the real cases' pooled vectors, and which classes exist."""
    device = module_device(extractor)
    sums, counts = None, torch.zeros(len(LESION_LABELS), device=device)
    with torch.no_grad():
        for start in range(0, len(real), batch_size):
            pooled, present = _pooled(extractor, real, slice(start, start + batch_size), device)
            weights = present.float()
            batch_sums = [(p * weights[..., None]).sum(0) for p in pooled]
            sums = batch_sums if sums is None else [s + t for s, t in zip(sums, batch_sums)]
            counts += weights.sum(0)
    return [s / counts.clamp_min(1)[:, None] for s in sums], counts > 0


def fit_intensity(
    extractor: torch.nn.Module,
    real: Patches,
    pool: Patches,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> FitResult:
    """Fit (a, b) per subregion and modality by SGD on the pooled L1 loss (§2.1).

    ``extractor`` is frozen here (eval mode, no parameter gradients).
    ``loss_start`` / ``loss_end`` are the loss over the whole pool at the
    starting (1, 0) and at the fitted values. The rows of a channel that no
    healthy scan of the pool has get no gradient and stay (1, 0). A
    non-finite loss stops the fit at once (``FloatingPointError`` naming the
    epoch and batch) before SGD would carry it into (a, b).
    """
    extractor.eval()
    for parameter in extractor.parameters():
        parameter.requires_grad_(False)
    device = module_device(extractor)
    target, target_present = real_target(extractor, real, batch_size)
    channels = pool.images.shape[1]
    a = torch.ones(channels, len(LESION_LABELS), device=device, requires_grad=True)
    b = torch.zeros(channels, len(LESION_LABELS), device=device, requires_grad=True)
    optimizer = torch.optim.SGD([a, b], lr=lr)
    order_rng = np.random.default_rng(seed)

    def pool_loss() -> float:
        total = 0.0
        with torch.no_grad():
            for start in range(0, len(pool), batch_size):
                index = slice(start, min(start + batch_size, len(pool)))
                loss = pooled_l1(*_pooled(extractor, pool, index, device, a, b), target, target_present)
                total += float(loss) * (index.stop - index.start)
        return total / len(pool)

    loss_start = pool_loss()
    history = []
    for epoch in range(epochs):
        order = order_rng.permutation(len(pool))
        epoch_losses = []
        for start in range(0, len(pool), batch_size):
            index = torch.from_numpy(order[start : start + batch_size])
            optimizer.zero_grad()
            loss = pooled_l1(*_pooled(extractor, pool, index, device, a, b), target, target_present)
            if not bool(torch.isfinite(loss)):
                raise FloatingPointError(
                    f"intensity fit: loss {float(loss.detach())} at epoch {epoch + 1}, batch {start // batch_size + 1} "
                    f"(pooled L1, fp32, a {a.detach().cpu().numpy().round(3).tolist()}); stopped"
                )
            loss.backward()
            optimizer.step()
            epoch_losses.append(float(loss.detach()))
        history.append(float(np.mean(epoch_losses)))
        if epoch == 0 or (epoch + 1) % max(1, epochs // 10) == 0:
            log.info("intensity fit epoch %d/%d: loss %.5f", epoch + 1, epochs, history[-1])
    loss_end = pool_loss()
    return FitResult(a.detach().cpu().numpy(), b.detach().cpu().numpy(), loss_start, loss_end, history)


# --- The JSON file ------------------------------------------------------------------
def save_intensity(
    result: FitResult,
    modalities: Sequence[str],
    path: str | os.PathLike,
    settings: Mapping | None = None,
    fitted: Sequence[str] | None = None,
    reference_quantiles: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Write a, b per channel and subregion, the losses and the settings as JSON.

    ``result``'s rows are ``modalities``; only those of ``fitted`` (default
    all) are written. ``reference_quantiles`` (the fill's references, per
    channel) are written when given, after the settings.
    """
    fitted = list(modalities) if fitted is None else list(fitted)

    def table(values: np.ndarray) -> dict:
        return {
            m: {LABEL_KEYS[l]: float(values[c, k]) for k, l in enumerate(LESION_LABELS)}
            for c, m in enumerate(modalities)
            if m in fitted
        }

    content = {
        "method": "TF-Aug intensity modification I(x) = a*x + b per subregion (paper 002, section 2.1)",
        "modalities": list(modalities),
        "a": table(result.a),
        "b": table(result.b),
        "loss_start": result.loss_start,
        "loss_end": result.loss_end,
        "loss_per_epoch": result.loss_per_epoch,
        "settings": dict(settings or {}),
    }
    if reference_quantiles:
        content["reference_quantiles"] = {m: [float(v) for v in q] for m, q in reference_quantiles.items()}
    save_text(json.dumps(content, indent=2) + "\n", path)


def load_intensity(path: str | os.PathLike, modalities: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)`` as [C, 3] arrays for ``modalities`` (an error names the channels not fitted)."""
    content = json.loads(Path(path).read_text())
    missing = [m for m in modalities if m not in content["a"]]
    if missing:
        raise ValueError(
            f"{path}: no intensity parameters for channels {missing} (fitted: {sorted(content['a'])}); "
            "a channel no healthy scan of the fit has is not fitted, TF-Aug fills it (tfaug.fill)"
        )
    a = np.array([[content["a"][m][LABEL_KEYS[l]] for l in LESION_LABELS] for m in modalities], dtype=np.float32)
    b = np.array([[content["b"][m][LABEL_KEYS[l]] for l in LESION_LABELS] for m in modalities], dtype=np.float32)
    return a, b


def load_reference_quantiles(path: str | os.PathLike, channels: Sequence[str]) -> dict[str, np.ndarray]:
    """The real training cases' pooled brain quantiles of ``channels`` (float32), the fill's references."""
    saved = json.loads(Path(path).read_text()).get("reference_quantiles", {})
    missing = [m for m in channels if m not in saved]
    if missing:
        raise ValueError(
            f"{path}: no reference quantiles for channels {missing}; the fit keeps them for every "
            f"channel but {FILL_SOURCE} when data.modalities has several: refit with these channels configured"
        )
    return {m: np.asarray(saved[m], dtype=np.float32) for m in channels}


def fit_tfaug_intensity(
    real_case_dirs: Sequence[str | os.PathLike],
    healthy_case_dirs: Sequence[str | os.PathLike],
    model_dir: str | os.PathLike,
    out_json: str | os.PathLike,
    modalities: Sequence[str],
    seed: int,
    masks: MaskAugmentation,
    blur_sigma: float,
    intensity_fit: IntensityFitSettings,
    extractor: torch.nn.Module | None = None,
) -> FitResult:
    """The ``fit_tfaug_intensity`` rule: build the data, load F, fit, write the JSON.

    Of ``tfaug`` the fit reads ``masks``, ``blur_sigma`` and ``intensity_fit``
    only: its pool is drawn without the lesion controls and the mass effect,
    so a change of those does not refit (a, b). ``extractor`` replaces
    the nnU-Net encoder read from ``model_dir`` (tests). Which channels each
    healthy scan has is read from its case folder (``casefolder.channels_in``).
    """
    torch.manual_seed(seed)
    if extractor is None:
        from tumorfab.segmentation.features import load_feature_extractor

        extractor = load_feature_extractor(model_dir, n_stages=intensity_fit.n_stages)
    healthy_case_dirs = list(healthy_case_dirs)
    present = healthy_channels(healthy_case_dirs, modalities)
    fitted = [m for m in modalities if any(m in channels for channels in present)]
    # The fill's references: kept with several channels only, so the T1-only JSON stays as it was.
    reference_channels = [m for m in modalities if m != FILL_SOURCE] if len(modalities) > 1 else []
    bank, real, quantiles = real_data(real_case_dirs, modalities, intensity_fit.patch_size, reference_channels)
    pool = synthetic_pool(
        bank, healthy_case_dirs, modalities, intensity_fit.n_pairs, masks, blur_sigma, intensity_fit.patch_size, seed,
        quantiles,
    )
    log.info("intensity fit: %d real patches, %d synthetic pairs, patch %d", len(real), len(pool), intensity_fit.patch_size)
    if fitted != list(modalities):
        unfitted = [m for m in modalities if m not in fitted]
        log.info("intensity fit: channels fitted %s; no healthy scan has %s (filled)", fitted, unfitted)
    result = fit_intensity(extractor, real, pool, intensity_fit.epochs, intensity_fit.lr, intensity_fit.batch_size, seed)
    log.info("intensity fit: loss %.5f -> %.5f; a %s, b %s", result.loss_start, result.loss_end, result.a.tolist(), result.b.tolist())
    save_intensity(
        result, modalities, out_json, {**intensity_fit.record(), "seed": seed, "blur_sigma": blur_sigma}, fitted, quantiles
    )
    return result
