from snakemake.cli import parse_config

from tumorfab.config import typed_command_line_config


def _typed(*entries: str) -> dict:
    """What common.smk validates for ``snakemake --config ENTRIES``."""
    return typed_command_line_config(parse_config(list(entries)))


def test_nested_booleans_numbers_and_null_are_typed():
    config = _typed("data={remap_label_4_to_3: true, brats_root: null}", "split={n_real_train: 4, n_val: 2}")
    assert config == {
        "data": {"remap_label_4_to_3": True, "brats_root": None},
        "split": {"n_real_train": 4, "n_val": 2},
    }


def test_lists_and_floats_inside_the_braces_are_typed():
    config = _typed("segmentation={seeds: [0, 1]}", "skullstrip={border_mm: 1.5}")
    assert config == {"segmentation": {"seeds": [0, 1]}, "skullstrip": {"border_mm": 1.5}}


def test_paths_case_ids_and_globs_stay_strings():
    # A glob must be quoted inside the braces (a bare * starts a YAML alias).
    config = _typed(
        """data={brats_root: /data/BraTS2023-GLI, healthy_pattern: "*.nii.gz", modalities: [t1n, t2f]}""",
        "registration={reference_case: BraTS-GLI-00012-001}",
    )
    assert config == {
        "data": {"brats_root": "/data/BraTS2023-GLI", "healthy_pattern": "*.nii.gz", "modalities": ["t1n", "t2f"]},
        "registration": {"reference_case": "BraTS-GLI-00012-001"},
    }


def test_strings_yaml_reads_as_dates_stay_strings():
    assert _typed("data={brats_root: 2025-01-31}") == {"data": {"brats_root": "2025-01-31"}}


def test_top_level_values_typed_by_snakemake_are_kept():
    assert _typed("seed=7") == {"seed": 7}
