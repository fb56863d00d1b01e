"""The one definition of the BraTS labels, regions and colours (tumorfab.labels)."""

from __future__ import annotations

import json

from tumorfab import labels
from tumorfab.segmentation.dataset import dataset_json


def test_labels_are_the_brats_2023_convention():
    assert labels.LABELS == (0, 1, 2, 3)
    assert (labels.BACKGROUND, labels.NCR, labels.ED, labels.ET) == (0, 1, 2, 3)
    assert labels.LESION_LABELS == (1, 2, 3)
    assert labels.LEGACY_ET == 4
    assert labels.LABEL_NAMES == {1: "NCR", 2: "ED", 3: "ET"}
    assert labels.LABEL_KEYS == {1: "ncr", 2: "ed", 3: "et"}


def test_regions_are_the_brats_regions_in_column_order():
    assert labels.REGIONS == {"et": (3,), "tc": (1, 3), "wt": (1, 2, 3)}
    assert labels.REGION_KEYS == ("et", "tc", "wt")
    # Nested: ET inside TC inside WT, and WT is every tumour label.
    et, tc, wt = (set(labels.REGIONS[k]) for k in labels.REGION_KEYS)
    assert et < tc < wt == set(labels.LESION_LABELS)


def test_nnunet_dataset_json_keeps_its_region_based_labels():
    meta = dataset_json(["t1n"], 3)
    assert json.dumps(meta["labels"]) == (
        '{"background": 0, "whole tumor": [1, 2, 3], "tumor core": [1, 3], "enhancing tumor": [3]}'
    )
    assert meta["regions_class_order"] == [2, 1, 3]
    # Each region's class order label lies in that region and in no smaller one.
    regions = [labels.NNUNET_REGION_LABELS[k] for k in ("whole tumor", "tumor core", "enhancing tumor")]
    for label, region, inner in zip(labels.NNUNET_REGIONS_CLASS_ORDER, regions, [*regions[1:], []]):
        assert label in region and label not in inner


def test_both_colour_conventions_colour_every_tumour_label():
    assert labels.COLOUR_NAMES == {1: "red", 2: "green", 3: "yellow"}
    assert labels.REPORT_COLOURS == {1: "#e41a1c", 2: "#4daf4a", 3: "#ffd92f"}
