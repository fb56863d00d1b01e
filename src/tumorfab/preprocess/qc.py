"""Quality-control figures: three orthogonal slices of a volume."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from tumorfab.io import atomic_path, load_nifti  # noqa: E402
from tumorfab.labels import COLOUR_NAMES, LESION_LABELS  # noqa: E402

#: NCR, ED, ET (values 1..3) in the colours BraTS figures usually use.
LABEL_CMAP = ListedColormap([COLOUR_NAMES[k] for k in LESION_LABELS])


def _slices(volume: np.ndarray, centre: tuple[int, int, int]) -> list[np.ndarray]:
    i, j, k = centre
    # Rotate so that anterior/superior point up in the usual radiological view.
    return [np.rot90(volume[i, :, :]), np.rot90(volume[:, j, :]), np.rot90(volume[:, :, k])]


def _ras(volume: str | Path | nib.Nifti1Image) -> nib.Nifti1Image:
    """A volume in RAS voxel order, so that every scan is shown the same way up."""
    return nib.as_closest_canonical(volume if isinstance(volume, nib.Nifti1Image) else load_nifti(volume))


def orthogonal_slices_png(
    image: str | Path | nib.Nifti1Image,
    out_png: str | Path,
    title: str,
    seg: str | Path | nib.Nifti1Image | None = None,
    outline: str | Path | nib.Nifti1Image | None = None,
) -> None:
    """Sagittal, coronal and axial slices through the lesion centroid (if a
    ``seg`` is given), else the outline's centroid, else the volume centre;
    labels as a coloured overlay and ``outline`` (e.g. a brain mask) as a
    contour. All volumes share the image's grid."""
    data = _ras(image).get_fdata(dtype=np.float32)
    labels = None if seg is None else np.asarray(_ras(seg).dataobj).astype(np.uint8)
    contour = None if outline is None else np.asarray(_ras(outline).dataobj) > 0
    if labels is not None and labels.any():
        centre = tuple(int(c) for c in np.argwhere(labels > 0).mean(axis=0))
    elif contour is not None and contour.any():
        centre = tuple(int(c) for c in np.argwhere(contour).mean(axis=0))
    else:
        centre = tuple(s // 2 for s in data.shape)

    figure, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    for index, axis in enumerate(axes):
        axis.imshow(_slices(data, centre)[index], cmap="gray")
        if labels is not None:
            overlay = np.ma.masked_equal(_slices(labels, centre)[index], 0)
            axis.imshow(overlay, cmap=LABEL_CMAP, vmin=1, vmax=3, alpha=0.45, interpolation="nearest")
        if contour is not None:
            axis.contour(_slices(contour.astype(float), centre)[index], levels=[0.5], colors="cyan", linewidths=0.6)
        axis.set_axis_off()
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    with atomic_path(out_png) as tmp:
        figure.savefig(tmp, dpi=80, format="png")
    plt.close(figure)
