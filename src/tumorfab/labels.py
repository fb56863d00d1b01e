"""The tumour labels of every label map the pipeline reads or writes: one definition.

BraTS 2023 label convention (the BraTS 2023 glioma challenge; BraTS 2021 and
earlier used 4 for ET, see ``data.remap_label_4_to_3``): 0 background, 1 NCR
(necrotic tumour core), 2 ED (peritumoural edema, "SNFH"), 3 ET (enhancing
tumour). Paper 002 (§3.1.1: BraTS 2023 adult glioma; §3.2.2: "Following
the standard BraTS protocol") scores the three nested BraTS regions built from
them: ET = {3}, TC (tumour core) = {1, 3}, WT (whole tumour) = {1, 2, 3}.

Everything here is plain Python (no numpy, no matplotlib), so any module,
the workflow included, may import it.
"""

from __future__ import annotations

# --- Label values ------------------------------------------------------------------
BACKGROUND = 0
NCR = 1
ED = 2
ET = 3
#: Every value a label map (``seg.nii.gz``) may hold.
LABELS = (BACKGROUND, NCR, ED, ET)
#: The tumour labels (subregions), in label order.
LESION_LABELS = (NCR, ED, ET)
#: ET's value in BraTS 2021 and earlier (``data.remap_label_4_to_3`` maps it to ET).
LEGACY_ET = 4

# --- Names ---------------------------------------------------------------------------
#: Display names (figures, legends).
LABEL_NAMES = {NCR: "NCR", ED: "ED", ET: "ET"}
#: Lower-case keys of the subregions where they are keys in config and files
#: (``tfaug.controls.offset``, ``intensity.json``, the TF-Aug manifest).
LABEL_KEYS = {NCR: "ncr", ED: "ed", ET: "et"}

# --- Evaluation regions ----------------------------------------------------------------
#: BraTS region -> its labels, in the order of the evaluation's CSV columns
#: (``dice_et, dice_tc, dice_wt``, ...); the tuples are nnU-Net's region keys.
REGIONS: dict[str, tuple[int, ...]] = {"et": (ET,), "tc": (NCR, ET), "wt": (NCR, ED, ET)}
#: The region keys, in column order.
REGION_KEYS = tuple(REGIONS)

# --- nnU-Net's region-based training (its dataset.json form) ------------------------------
#: Region-based BraTS labels as nnU-Net's ``dataset.json`` ``labels`` (key order
#: matters: nnU-Net trains one sigmoid per region, WT, TC, ET).
NNUNET_REGION_LABELS: dict[str, int | list[int]] = {
    "background": BACKGROUND,
    "whole tumor": list(REGIONS["wt"]),
    "tumor core": list(REGIONS["tc"]),
    "enhancing tumor": list(REGIONS["et"]),
}
#: nnU-Net's ``regions_class_order``: the label written where the regions hold
#: (ED for WT only, NCR for TC, ET for ET), back to a BraTS label map.
NNUNET_REGIONS_CLASS_ORDER = [ED, NCR, ET]

# --- Colours ---------------------------------------------------------------------------
#: NCR red, ED green, ET yellow (the colours BraTS figures usually use), as
#: matplotlib colour names: the quality-control overlays draw these, and the
#: legends of the report figures name them.
COLOUR_NAMES = {NCR: "red", ED: "green", ET: "yellow"}
#: The same colours as the report figures draw them (ColorBrewer Set1 shades).
REPORT_COLOURS = {NCR: "#e41a1c", ED: "#4daf4a", ET: "#ffd92f"}
