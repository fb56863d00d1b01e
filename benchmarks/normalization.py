"""Intensity normalization before (brain percentiles) and after (white matter), on real scans.

On the real BraTS case ``../shared/data/real/brats/BraTS-GLI-00000-000``
(four sequences) and the two real healthy T1 heads of
``../shared/data/real/healthy`` (skull-stripped here with the atlas method,
as the workflow does without SynthStrip weights), prints per sequence:

* the white-matter level (``tumorfab.preprocess.normalize.white_matter_level``
  in the T1's ``white_matter``) in raw units, and the levels of the brain, the
  non-tumour brain, the tumour labels NCR, ED, ET and CSF, as multiples of it
  (medians; CSF of the BraTS case: non-tumour brain brighter than 3 x the t2w
  white matter on t2w; of swm_T1: FreeSurfer's ventricles, labels 4 and 43);
* the ceiling each sequence's 99.5th percentiles suggest (the brain's and
  every tumour label's, + 10 % headroom, rounded up to 0.25): the rule behind
  the defaults of ``normalize.ceiling_over_white_matter``;
* the normalized white-matter mode and levels before (the 0.5-99.5th brain
  percentiles mapped to [-1, 1]) and after (the configured ceilings), and the
  fraction of brain voxels clipped at +1.

Writes a figure of the normalized histograms before and after to the path
given. Run: ``python benchmarks/normalization.py docs/figures/normalization.png``
(about a minute: most of it skull stripping).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from tumorfab.preprocess.normalize import (  # noqa: E402
    brainmask_from_stripped,
    normalize_intensity,
    white_matter,
    white_matter_level,
)
from tumorfab.preprocess.settings import NormalizeSettings, SkullstripSettings  # noqa: E402
from tumorfab.preprocess.skullstrip import skullstrip  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers.schema_defaults import schema_defaults  # noqa: E402  (the config schema's defaults)

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
CASE = "BraTS-GLI-00000-000"
CHANNELS = ("t1n", "t1c", "t2w", "t2f")
HEADS = {"chris_t1": "chris_t1.nii.gz", "swm_T1": "swm_T1.nii.gz"}
LABELS = {"NCR": 1, "ED": 2, "ET": 3}
#: CSF of the BraTS case: non-tumour brain this many times brighter than the t2w white matter.
CSF_OVER_T2W_WHITE = 3.0
FREESURFER_VENTRICLES = (4, 43)
HEADROOM = 1.1


def percentile_normalized(image: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """The former normalization: the brain's 0.5-99.5th percentiles mapped to [-1, 1], clipped."""
    low, high = np.percentile(image[brain], [0.5, 99.5])
    return np.where(brain, (np.clip(image, low, high) - low) / (high - low) * 2.0 - 1.0, -1.0)


def fine_mode(values: np.ndarray) -> float:
    """Mode of a 0.2 %-of-range histogram (no smoothing beyond the bins) of the
    values strictly inside (-1, 1): the voxels clipped at either end are no tissue's peak."""
    counts, edges = np.histogram(values[(values > -1.0) & (values < 1.0)], bins=500)
    index = int(np.argmax(counts))
    return float(edges[index : index + 2].mean())


def suggested_ceiling(ratios: list[float]) -> float:
    return math.ceil(max(ratios) * HEADROOM * 4) / 4


def regions_of_case(seg: np.ndarray, brain: np.ndarray, t2w: np.ndarray, white: np.ndarray) -> dict[str, np.ndarray]:
    healthy = brain & (seg == 0)
    regions = {"brain": brain, "non-tumour": healthy}
    regions.update({name: seg == label for name, label in LABELS.items()})
    regions["CSF"] = healthy & (t2w > CSF_OVER_T2W_WHITE * white_matter_level(t2w, white, "t2w"))
    return regions


def report(
    name: str,
    channel: str,
    image: np.ndarray,
    regions: dict[str, np.ndarray],
    white: np.ndarray,
    settings: NormalizeSettings,
):
    brain = regions["brain"]
    level = white_matter_level(image, white, channel)
    before = percentile_normalized(image, brain)
    after = normalize_intensity(image, brain, channel, white, settings)
    print(f"{name} {channel}: white matter {level:.1f} (raw); ceiling {settings.ceiling(channel):g} x white matter")
    print(f"  {'region':<14}{'x WM':>8}{'p99.5 x WM':>14}{'before':>9}{'after':>8}")
    for region, where in regions.items():
        if not where.any():
            continue
        print(
            f"  {region:<14}{np.median(image[where]) / level:8.2f}{np.percentile(image[where], 99.5) / level:14.2f}"
            f"{np.median(before[where]):9.3f}{np.median(after[where]):8.3f}"
        )
    print(
        f"  normalized brain mode: before {fine_mode(before[brain]):+.3f}, "
        f"after {fine_mode(after[brain]):+.3f}; "
        f"brain mean before {before[brain].mean():+.3f}, after {after[brain].mean():+.3f}; "
        f"clipped at +1 after: {np.mean(after[brain] >= 1.0):.2%} of the brain"
    )
    return before, after


def strip_heads(work: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    settings = SkullstripSettings.from_config(schema_defaults()["skullstrip"])
    heads = {}
    for name, file in HEADS.items():
        out = work / name
        skullstrip(
            REAL / "healthy" / file, out / "t1n.nii.gz", out / "brainmask.nii.gz", out / "qc.png",
            failure_qc=out / "refused.png", settings=settings, seed=2025,
        )
        image = nib.load(str(out / "t1n.nii.gz")).get_fdata(dtype=np.float32)
        heads[name] = image, np.asarray(nib.load(str(out / "brainmask.nii.gz")).dataobj) > 0
    return heads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figure", type=Path, help="where to write the before/after histogram figure (PNG)")
    args = parser.parse_args()
    settings = NormalizeSettings.from_config(schema_defaults()["normalize"])

    folder = REAL / "brats" / CASE
    images = {c: nib.load(str(folder / f"{CASE}-{c}.nii.gz")).get_fdata(dtype=np.float32) for c in CHANNELS}
    seg = np.asarray(nib.load(str(folder / f"{CASE}-seg.nii.gz")).dataobj).astype(np.uint8)
    brain = brainmask_from_stripped(list(images.values())).astype(bool)
    white = white_matter(images["t1n"], brain)
    regions = regions_of_case(seg, brain, images["t2w"], white)

    fig, axes = plt.subplots(len(CHANNELS), 2, figsize=(11, 3 * len(CHANNELS)), sharex=True, constrained_layout=True)
    bins = np.linspace(-1, 1, 201)
    print(f"Suggested ceilings (largest 99.5th percentile of the brain and of {', '.join(LABELS)}, "
          f"x {HEADROOM}, rounded up to 0.25):")
    for channel in CHANNELS:
        level = white_matter_level(images[channel], white, channel)
        ratios = [np.percentile(images[channel][regions[r]], 99.5) / level for r in ("brain", *LABELS)]
        rounded = [round(float(r), 2) for r in ratios]
        print(f"  {channel}: {suggested_ceiling(ratios):g}  (99.5th percentiles x white matter: {rounded})")
    print()
    for row, channel in zip(axes, CHANNELS):
        before, after = report(CASE, channel, images[channel], regions, white, settings)
        titles = ("before: brain percentiles", "after: white matter")
        for ax, normalized, title in zip(row, (before, after), titles):
            for region in ("non-tumour", *LABELS):
                ax.hist(normalized[regions[region]], bins, histtype="step", density=True, label=f"BraTS {region}")
            ax.set_title(f"{channel}, {title}")
        print()

    with tempfile.TemporaryDirectory() as work:
        heads = strip_heads(Path(work))
    aseg = np.asarray(nib.load(str(REAL / "reference" / "swm_aparc.DKTatlas+aseg.nii.gz")).dataobj)
    for name, (image, head_brain) in heads.items():
        head_regions = {"brain": head_brain}
        if name == "swm_T1":
            head_regions["FreeSurfer WM"] = np.isin(aseg, (2, 41))
            head_regions["CSF"] = np.isin(aseg, FREESURFER_VENTRICLES)
        before, after = report(name, "t1n", image, head_regions, white_matter(image, head_brain), settings)
        for ax, normalized in zip(axes[0], (before, after)):
            top = ax.get_ylim()[1]  # the BraTS curves'; swm_T1's FreeSurfer-normalized spike may stand above it
            ax.hist(
                normalized[head_brain], bins, histtype="step", density=True, linestyle="--", label=f"healthy {name}"
            )
            ax.set_ylim(0, top)
        print()
    for ax in axes[:, 0]:
        ax.set_ylabel("density")
    for ax in axes[-1]:
        ax.set_xlabel("normalized intensity")
    axes[0, 1].legend(fontsize=7)
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.figure, dpi=110)
    print(f"Figure: {args.figure}")


if __name__ == "__main__":
    main()
