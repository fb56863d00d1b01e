"""Per-case evaluation of held-out predictions: Dice, HD95 and lesion-wise sensitivity.

Regions (BraTS, :data:`tumorfab.labels.REGIONS`): WT = {1,2,3}, TC = {1,3}, ET = {3}.

- **Dice** is nnU-Net's own (``nnunetv2.evaluation.evaluate_predictions.
  compute_metrics``, per case, regions keyed as nnU-Net keys them). nnU-Net
  gives NaN when a region is empty in both the reference and the prediction
  (``tp + fp + fn == 0``), and 0 when the reference is empty but something was
  predicted. We keep nnU-Net's values unchanged, so a per-case CSV may hold
  NaN (typically ET of a tumour without enhancement); means over cases should
  skip NaN, as nnU-Net's own summary (``np.nanmean``) does.
- **HD95** (mm): MONAI's ``compute_hausdorff_distance(percentile=95)``
  (symmetric, Euclidean, voxel spacing from the NIfTI header). Both empty:
  NaN (as Dice). Exactly one empty: the diagonal of the volume in mm, the
  largest distance possible in it (BraTS uses 373.13 mm, the diagonal of its
  240x240x155 grid at 1 mm).
- **Lesion-wise sensitivity**: a lesion is a connected component (26-
  connectivity) of the reference region; it is detected when at least one of
  its voxels is in the predicted region. Sensitivity = detected / lesions;
  NaN when the reference has no lesion of that region.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Mapping

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from tumorfab.io import save_csv
from tumorfab.labels import REGIONS

#: The metrics of a case, per region: the columns of a per-case CSV besides ``case_id``.
METRIC_COLUMNS = [
    *[f"dice_{r}" for r in REGIONS],
    *[f"hd95_{r}" for r in REGIONS],
    *[f"lesion_sens_{r}" for r in REGIONS],
]
#: The columns of a per-case CSV (:func:`evaluate`).
COLUMNS = ["case_id", *METRIC_COLUMNS]
_CONNECTIVITY = ndimage.generate_binary_structure(3, 3)


def region_mask(seg: np.ndarray, region: tuple[int, ...]) -> np.ndarray:
    return np.isin(seg, region)


def nnunet_dice(reference_file: str | os.PathLike, prediction_file: str | os.PathLike) -> dict[str, float]:
    """Dice per region from nnU-Net's ``compute_metrics`` (NaN when both are empty)."""
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics
    from nnunetv2.imageio.nibabel_reader_writer import NibabelIO

    result = compute_metrics(str(reference_file), str(prediction_file), NibabelIO(), list(REGIONS.values()))
    return {name: float(result["metrics"][region]["Dice"]) for name, region in REGIONS.items()}


def hd95(reference: np.ndarray, prediction: np.ndarray, spacing: tuple[float, ...]) -> float:
    """95th-percentile symmetric Hausdorff distance in mm (see module docstring for empties)."""
    from monai.metrics import compute_hausdorff_distance

    has_ref, has_pred = bool(reference.any()), bool(prediction.any())
    if not has_ref and not has_pred:
        return math.nan
    if has_ref != has_pred:
        return float(np.linalg.norm(np.array(reference.shape) * np.array(spacing)))
    with warnings.catch_warnings():
        # MONAI 1.6 warns about an argument it passes to itself internally
        warnings.filterwarnings("ignore", category=FutureWarning, module="monai")
        value = compute_hausdorff_distance(
            prediction[None, None].astype(np.float32),
            reference[None, None].astype(np.float32),
            include_background=True,
            percentile=95,
            spacing=[float(s) for s in spacing],
        )
    return float(value.reshape(-1)[0])


def lesion_sensitivity(reference: np.ndarray, prediction: np.ndarray) -> float:
    """Fraction of reference lesions (26-connected components) touched by the prediction."""
    labels, n = ndimage.label(reference, structure=_CONNECTIVITY)
    if n == 0:
        return math.nan
    detected = np.unique(labels[prediction & (labels > 0)])
    return float(len(detected)) / n


def evaluate_case(reference_file: str | os.PathLike, prediction_file: str | os.PathLike) -> dict[str, float]:
    """All metrics of one case (keys: :data:`METRIC_COLUMNS`)."""
    reference_image = nib.load(str(reference_file))
    prediction_image = nib.load(str(prediction_file))
    reference = np.asanyarray(reference_image.dataobj).astype(np.int16)
    prediction = np.asanyarray(prediction_image.dataobj).astype(np.int16)
    if reference.shape != prediction.shape:
        raise ValueError(f"{prediction_file}: shape {prediction.shape} != reference {reference.shape}")
    spacing = tuple(float(z) for z in reference_image.header.get_zooms()[:3])
    row = {f"dice_{k}": v for k, v in nnunet_dice(reference_file, prediction_file).items()}
    for name, region in REGIONS.items():
        ref, pred = region_mask(reference, region), region_mask(prediction, region)
        row[f"hd95_{name}"] = hd95(ref, pred, spacing)
        row[f"lesion_sens_{name}"] = lesion_sensitivity(ref, pred)
    return row


def evaluate(
    predictions_dir: str | os.PathLike,
    references: Mapping[str, str | os.PathLike],
    out_csv: str | os.PathLike,
) -> pd.DataFrame:
    """Evaluate ``predictions_dir/{case}.nii.gz`` against ``references[case]``; write the CSV.

    One row per reference case, in the order given; a missing prediction is an error.
    """
    rows = []
    for case_id, reference in references.items():
        prediction = Path(predictions_dir) / f"{case_id}.nii.gz"
        if not prediction.exists():
            raise FileNotFoundError(f"{prediction}: no prediction for held-out case {case_id}")
        rows.append({"case_id": case_id, **evaluate_case(reference, prediction)})
        print(f"{case_id}: " + ", ".join(f"{k}={v:.4g}" for k, v in rows[-1].items() if k != "case_id"))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    save_csv(frame, out_csv)
    return frame
