"""Images handed to nnU-Net, and the study's one nnU-Net raw dataset.

Pipeline images live in [-1, 1] with a background of exactly -1 (what a GAN
sees). nnU-Net crops every case to the non-zero region of its channels and
z-scores inside it (the shared plan's ``use_mask_for_norm``,
:mod:`~tumorfab.segmentation.plans`), so every image it gets is converted once
per case by :func:`to_nnunet_image` (brain ``x + 2``, i.e. in [1, 3], and
exactly 0 outside the brain mask) and written to a per-case folder; the raw
dataset then only *links* those files.

The raw dataset (nnU-Net layout) holds the real training cases in ``imagesTr``
/ ``labelsTr`` (the shared plan is made on them) and the held-out real cases in
``imagesTs`` (every experiment predicts them; their references stay with the
case folders and are read by the evaluation). Synthetic cases never enter it:
an experiment's training set (real cases plus a manifest prefix,
``tumorfab.synthesis.manifest.training_cases``) exists only as its
preprocessed dataset (``tumorfab.segmentation.preprocessed``). Labels are the
BraTS regions, trained region-based as nnU-Net does for BraTS (sigmoid per
region: WT, TC, ET).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from tumorfab.casefolder import SEG, case_file, read_brainmask, read_image
from tumorfab.io import atomic_directory, save_nifti
from tumorfab.labels import NNUNET_REGION_LABELS, NNUNET_REGIONS_CLASS_ORDER
from tumorfab.synthesis.manifest import manifest_case_ids

#: Every experiment has its own nnU-Net folders, so the same id never collides.
DATASET_ID = 1
FILE_ENDING = ".nii.gz"


def dataset_name(experiment: str) -> str:
    """nnU-Net's dataset name of an experiment, e.g. ``Dataset001_carvemix_100``."""
    return f"Dataset{DATASET_ID:03d}_{experiment}"


def to_nnunet_image(image: np.ndarray, brainmask: np.ndarray) -> np.ndarray:
    """Map a pipeline image ([-1, 1], background -1) to what nnU-Net gets.

    Inside the brain mask ``x + 2`` (in [1, 3], so never 0); outside exactly 0.
    nnU-Net's non-zero mask is then the brain mask, and since it z-scores
    inside that mask, the shift changes nothing the network sees.
    """
    image = np.asarray(image, dtype=np.float32)
    inside = np.asarray(brainmask).astype(bool)
    if image.shape != inside.shape:
        raise ValueError(f"image shape {image.shape} != brain mask shape {inside.shape}")
    return np.where(inside, image + np.float32(2.0), np.float32(0.0)).astype(np.float32)


def convert_case(case_dir: str | os.PathLike, out_dir: str | os.PathLike, modalities: Sequence[str]) -> list[Path]:
    """Write ``{modality}.nii.gz`` of a case folder as nnU-Net images into ``out_dir``.

    The geometry (affine, header) of each image is kept. Returns the written files.
    """
    case_dir, out_dir = Path(case_dir), Path(out_dir)
    mask = read_brainmask(case_dir)[0] > 0
    written = []
    for modality in modalities:
        image = read_image(case_dir, modality)
        data = to_nnunet_image(image.get_fdata(dtype=np.float32), mask)
        header = image.header.copy()
        header.set_data_dtype(np.float32)
        header["scl_slope"], header["scl_inter"] = 1.0, 0.0
        target = out_dir / f"{modality}.nii.gz"
        save_nifti(data, image.affine, target, header=header)
        written.append(target)
    return written


@dataclass(frozen=True)
class NnunetCase:
    """One case of a raw dataset: converted image folder and (for training) its labels."""

    case_id: str
    image_dir: Path  # holds {modality}.nii.gz written by convert_case
    seg: Path | None = None  # uint8 BraTS labels {0,1,2,3}


def dataset_json(modalities: Sequence[str], n_training: int) -> dict:
    """nnU-Net's dataset.json for region-based BraTS labels (key order preserved).

    The reader is nnU-Net's ``NibabelIO`` (the pipeline writes with nibabel;
    it reads arrays in the same axis order as SimpleITK would).
    """
    return {
        "channel_names": {str(i): m for i, m in enumerate(modalities)},
        "labels": dict(NNUNET_REGION_LABELS),
        "regions_class_order": list(NNUNET_REGIONS_CLASS_ORDER),
        "numTraining": n_training,
        "file_ending": FILE_ENDING,
        "overwrite_image_reader_writer": "NibabelIO",
    }


def _link(target: Path, link: Path) -> None:
    """Relative symbolic link ``link -> target`` (so a moved results folder keeps working)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(os.path.relpath(Path(target).resolve(), link.parent.resolve()), link)


def write_raw_dataset(
    dataset_dir: str | os.PathLike,
    training: Sequence[NnunetCase],
    test: Sequence[NnunetCase],
    modalities: Sequence[str],
) -> None:
    """Create an nnU-Net raw dataset folder of links to converted images and labels.

    ``dataset_dir`` is ``.../DatasetXXX_name``; it must not exist yet (build
    it under a temporary name and rename). Training cases go to ``imagesTr``
    and ``labelsTr``, test (held-out) cases to ``imagesTs``. Case ids must be
    unique across both.
    """
    dataset_dir = Path(dataset_dir)
    ids = [c.case_id for c in [*training, *test]]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"case ids used twice in one dataset: {duplicates[:5]}")
    for folder, cases in (("imagesTr", training), ("imagesTs", test)):
        for case in cases:
            for channel, modality in enumerate(modalities):
                source = case.image_dir / f"{modality}.nii.gz"
                if not source.exists():
                    raise FileNotFoundError(f"{source}: converted image missing for case {case.case_id}")
                _link(source, dataset_dir / folder / f"{case.case_id}_{channel:04d}{FILE_ENDING}")
    for case in training:
        if case.seg is None or not Path(case.seg).exists():
            raise FileNotFoundError(f"labels missing for training case {case.case_id}: {case.seg}")
        _link(Path(case.seg), dataset_dir / "labelsTr" / f"{case.case_id}{FILE_ENDING}")
    (dataset_dir / "dataset.json").write_text(
        json.dumps(dataset_json(modalities, len(training)), indent=2, sort_keys=False)
    )


def nnunet_cases(
    case_ids: Sequence[str], image_root: str | os.PathLike, case_root: str | os.PathLike
) -> list[NnunetCase]:
    """Cases with labels: converted images ``image_root/{case}``, labels
    ``case_root/{case}/seg.nii.gz`` (the case folder's)."""
    return [NnunetCase(c, Path(image_root) / c, case_file(Path(case_root) / c, SEG)) for c in case_ids]


def convert_real_case(case_dir: str | os.PathLike, out_dir: str | os.PathLike, modalities: Sequence[str]) -> None:
    """Convert one real case folder into ``out_dir`` (built whole, then renamed)."""
    with atomic_directory(out_dir) as tmp:
        convert_case(case_dir, tmp, modalities)


def convert_synthetic(
    manifest: str | os.PathLike,
    cases_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    modalities: Sequence[str],
) -> list[str]:
    """Convert every case of a synthetic source's manifest into ``out_dir/{case_id}/``.

    Every case of the manifest is converted (the source was generated at the
    largest size any experiment needs); experiments use prefixes of it.
    ``out_dir`` is built whole, then renamed. Returns the case ids in manifest order.
    """
    ids = manifest_case_ids(manifest)
    with atomic_directory(out_dir) as tmp:
        for case_id in ids:
            convert_case(Path(cases_dir) / case_id, tmp / case_id, modalities)
    return ids


def build_raw_dataset(
    out_root: str | os.PathLike,
    baseline: str,
    modalities: Sequence[str],
    train_cases: Sequence[str],
    val_cases: Sequence[str],
    real_image_root: str | os.PathLike,
    real_case_root: str | os.PathLike,
) -> Path:
    """The study's one raw dataset, under ``out_root`` (which plays ``nnUNet_raw``).

    Real cases only: ``imagesTr`` / ``labelsTr`` of the ``train_cases``
    (converted images under ``real_image_root/{case}``, labels
    ``real_case_root/{case}/seg.nii.gz``), ``imagesTs`` of the held-out
    ``val_cases``. It is what the shared plan is made on and what every
    experiment predicts; training reads only the preprocessed datasets. It
    carries the name of the real-only ``baseline`` experiment, which nnU-Net
    writes into the plan. Returns the dataset folder
    ``out_root/Dataset001_{baseline}`` (``dataset_name(baseline)``).
    """
    training = nnunet_cases(train_cases, real_image_root, real_case_root)
    test = [NnunetCase(c, Path(real_image_root) / c) for c in val_cases]
    with atomic_directory(out_root) as tmp:
        write_raw_dataset(tmp / dataset_name(baseline), training, test, modalities)
    return Path(out_root) / dataset_name(baseline)
