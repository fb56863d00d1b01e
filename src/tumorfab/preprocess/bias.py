"""N4 bias-field correction of healthy scans (not in the paper;
docs/interpretations.md, "Bias-field correction").

The receive coils leave a smooth multiplicative field on every raw scan: the
same tissue is brighter on one side of the head than on the other. BraTS 2023
distributes its cases preprocessed; healthy heads (IXI) come as the scanner
wrote them. The field widens each tissue's intensity mode, so the
white-matter peak that :mod:`tumorfab.preprocess.normalize` scales by merges
with grey matter's and healthy tissue lands brighter than in the tumour
cases. We remove it with N4 (Tustison et al. 2010, IEEE TMI 29(6), ANTsPy's
``n4_bias_field_correction``) on each healthy scan on its own grid, where
the field is smooth, before it is resampled onto the reference: each
sequence has a field of its own.
"""

from __future__ import annotations

import math

import ants
import numpy as np

from tumorfab.preprocess.settings import BiasCorrectionSettings

#: Slack on the ratio of ``fit_voxel_mm`` to a voxel side, so that a 1 mm scan
#: stored as 0.99999 mm is shrunk by 4, not 5.
SHRINK_SLACK = 1e-3


def shrink_factor(spacing: tuple[float, ...], fit_voxel_mm: float) -> int:
    """The smallest integer factor that makes the finest side of a
    ``spacing`` voxel at least ``fit_voxel_mm`` (1 if it already is)."""
    return max(1, math.ceil(fit_voxel_mm / min(spacing) - SHRINK_SLACK))


def correct_bias_field(
    image: ants.ANTsImage, brainmask: ants.ANTsImage, settings: BiasCorrectionSettings
) -> ants.ANTsImage:
    """``image`` divided by its N4 bias field, or ``image`` itself when
    ``settings.enabled`` is false.

    The field is fitted to the voxels of ``brainmask`` (> 0) that are > 0 (N4
    works on log intensities) at ``settings.fit_voxel_mm`` (:func:`shrink_factor`),
    and divided out of the whole image: it is smooth, so just outside the
    mask it is close to its value at the brain's edge, where a resampled
    sequence and a mask carried between grids may disagree by a voxel; the
    background of a stripped scan stays 0. N4's field has no scale of its
    own: it is divided by its geometric mean inside the mask, so the brain
    keeps the scanner's intensity scale on average.

    N4's B-spline fit sums over ITK threads, and one and two threads give
    different bytes: call :func:`tumorfab.preprocess.ants.deterministic_ants`
    before the process's first ANTs call, as every caller does.
    """
    if not settings.enabled:
        return image
    values = image.numpy()
    fitted = (brainmask.numpy() > 0) & (values > 0)
    field = ants.n4_bias_field_correction(
        image,
        mask=image.new_image_like(fitted.astype(np.float32)),
        shrink_factor=shrink_factor(image.spacing, settings.fit_voxel_mm),
        convergence={"iters": list(settings.iterations), "tol": settings.convergence_threshold},
        spline_param=settings.spline_distance_mm,
        return_bias_field=True,
    ).numpy()
    field /= np.exp(np.log(field[fitted]).mean())
    return image.new_image_like((values / field).astype(np.float32))
