"""The report (tumorfab.report): per-case/per-run CSVs, the paper's tables, figures, rules."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import planned_jobs, run_snakemake, study_of
from scipy import stats

from tumorfab.io import save_nifti
from tumorfab.report.figures import (
    dice_vs_synthetic_points,
    plot_dice_vs_synthetic,
    plot_mosaic,
    plot_refinement,
    plot_sequences,
)
from tumorfab.report.tables import (
    METRIC_COLUMNS,
    collect_per_case,
    format_p,
    per_run_table,
    write_collected,
    write_table,
)
from tumorfab.study import layout

EXPERIMENTS = {
    "baseline": {"source": "none", "n_synthetic": 0, "label": "Baseline (nnU-Net)"},
    "carvemix_2": {"source": "carvemix", "n_synthetic": 2, "label": "CarveMix"},
    "carvemix_4": {"source": "carvemix", "n_synthetic": 4, "label": "CarveMix | 4"},
    "tf_4": {"source": "tf", "n_synthetic": 4, "label": "TF (ours)"},
}
# Mean Dice levels per experiment: carvemix_4 clearly better than the baseline.
LEVELS = {"baseline": 0.60, "carvemix_2": 0.61, "carvemix_4": 0.70}
SEEDS = [0, 1, 2]
CASES = ["BraTS-GLI-00010-000", "BraTS-GLI-00011-000", "BraTS-GLI-00012-001", "BraTS-GLI-00013-000"]


def write_evaluation(root: Path, experiments=LEVELS, seeds=SEEDS) -> list[tuple[str, int, Path]]:
    """Per-case CSVs as the segmentation stage writes them, as (experiment, seed,
    path) of each run (no tf_4: not implemented)."""
    rng = np.random.default_rng(0)
    runs = []
    for experiment, level in experiments.items():
        for seed in seeds:
            frame = pd.DataFrame({"case_id": CASES})
            for i, region in enumerate(["et", "tc", "wt"]):
                frame[f"dice_{region}"] = np.clip(
                    level + 0.1 * i + rng.normal(0, 0.03, len(CASES)), 0, 1
                )
                frame[f"hd95_{region}"] = rng.uniform(2, 20, len(CASES))
                frame[f"lesion_sens_{region}"] = rng.uniform(0.5, 1, len(CASES))
            frame.loc[1, "hd95_et"] = np.nan  # undefined for one case
            path = root / layout.evaluation_csv(experiment, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(path, index=False)
            runs.append((experiment, seed, path))
    return runs


@pytest.fixture()
def per_run_csv(tmp_path):
    write_collected(write_evaluation(tmp_path), tmp_path / "per_case.csv", tmp_path / "per_run.csv")
    return tmp_path / "per_run.csv"


def test_per_case_stacks_every_run_with_experiment_and_seed(tmp_path):
    per_case = collect_per_case(write_evaluation(tmp_path))
    assert list(per_case.columns) == ["experiment", "seed", "case_id", *METRIC_COLUMNS]
    assert len(per_case) == len(LEVELS) * len(SEEDS) * len(CASES)
    assert set(zip(per_case["experiment"], per_case["seed"])) == {
        (e, s) for e in LEVELS for s in SEEDS
    }


def test_per_run_is_the_mean_over_cases_and_dice_mean_the_mean_of_regions(tmp_path):
    per_run = per_run_table(collect_per_case(write_evaluation(tmp_path)))
    assert len(per_run) == len(LEVELS) * len(SEEDS)
    one = pd.read_csv(tmp_path / layout.evaluation_csv("carvemix_2", 1))
    row = per_run[(per_run["experiment"] == "carvemix_2") & (per_run["seed"] == 1)].iloc[0]
    for column in METRIC_COLUMNS:
        assert row[column] == pytest.approx(one[column].mean())  # NaN skipped, as nnU-Net
    assert row["dice_mean"] == pytest.approx(
        np.mean([one[f"dice_{r}"].mean() for r in ["et", "tc", "wt"]])
    )
    assert row["n_cases"] == len(CASES)


def test_table_mean_std_and_p_value_equal_numpy_and_scipy_on_per_run(per_run_csv, tmp_path):
    summary = write_table(
        per_run_csv,
        tmp_path / "t.csv",
        tmp_path / "t.md",
        ["baseline", "carvemix_2", "carvemix_4"],
        {e: v["label"] for e, v in EXPERIMENTS.items()},
        "T",
    )
    per_run = pd.read_csv(per_run_csv)
    table = pd.read_csv(tmp_path / "t.csv")
    # CSV reads the empty "missing_seeds" back as NaN
    pd.testing.assert_frame_equal(
        table,
        summary.assign(missing_seeds=summary["missing_seeds"].where(summary["missing_seeds"] != "")),
        check_dtype=False,
    )
    reference = per_run[per_run["experiment"] == "baseline"]["dice_mean"].to_numpy()
    for row in table.itertuples():
        runs = per_run[per_run["experiment"] == row.experiment]
        for short, column, header in [
            ("et", "dice_et", "ET (%)"),
            ("tc", "dice_tc", "TC (%)"),
            ("wt", "dice_wt", "WT (%)"),
            ("mean", "dice_mean", "Mean (%)"),
        ]:
            values = runs[column].to_numpy() * 100
            mean, std = np.mean(values), np.std(values, ddof=1)
            assert getattr(row, f"{short}_mean_pct") == pytest.approx(mean, rel=1e-12)
            assert getattr(row, f"{short}_std_pct") == pytest.approx(std, rel=1e-12)
            assert table.loc[row.Index, header] == f"{mean:.2f} ± {std:.2f}"
        if row.experiment == "baseline":
            assert (
                table.loc[row.Index, "Mean Diff (%)"] == "-"
                and table.loc[row.Index, "p-value"] == "-"
            )
            continue
        values = runs["dice_mean"].to_numpy()
        p = stats.ttest_ind(values, reference, equal_var=True, alternative="two-sided").pvalue
        diff = (values.mean() - reference.mean()) * 100
        assert row.p_value == pytest.approx(p, rel=1e-12)
        assert row.mean_diff_pct == pytest.approx(diff, rel=1e-12)
        assert table.loc[row.Index, "Mean Diff (%)"] == f"{diff:+.2f}"
        assert table.loc[row.Index, "p-value"] == format_p(p)
    assert table.set_index("experiment").loc["carvemix_4", "p_value"] < 0.05


def test_rows_of_experiments_without_results_are_left_out(per_run_csv, tmp_path):
    table = write_table(
        per_run_csv,
        tmp_path / "t.csv",
        tmp_path / "t.md",
        ["baseline", "carvemix_2", "tf_4"],
        {},
        "T",
    )
    assert list(table["experiment"]) == ["baseline", "carvemix_2"]
    assert "Left out (no results in this run): tf_4." in (tmp_path / "t.md").read_text()
    assert not table.isna().all(axis=1).any()


def test_without_the_reference_diff_and_p_are_not_available(per_run_csv, tmp_path):
    table = write_table(
        per_run_csv, tmp_path / "t.csv", tmp_path / "t.md", ["tf_4", "carvemix_2"], {}, "T"
    )
    assert list(table["experiment"]) == ["carvemix_2"]
    assert table.loc[0, "Mean Diff (%)"] == "n/a" and table.loc[0, "p-value"] == "n/a"


def test_markdown_has_the_paper_layout(per_run_csv, tmp_path):
    labels = {e: v["label"] for e, v in EXPERIMENTS.items()}
    table = write_table(
        per_run_csv,
        tmp_path / "t.csv",
        tmp_path / "t.md",
        ["baseline", "carvemix_2", "carvemix_4"],
        labels,
        "Table 1. Title",
    )
    lines = (tmp_path / "t.md").read_text().splitlines()
    assert lines[0] == "## Table 1. Title"
    header = lines.index(
        "| Method | ET (%) ↑ | TC (%) ↑ | WT (%) ↑ | Mean (%) ↑ | Mean Diff (%) ↑ | p-value ↓ |"
    )
    caption = "\n".join(lines[1:header])  # under the title, above the table
    assert lines[header + 1] == "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    rows = [line.split(" | ") for line in lines[header + 2 : header + 5]]
    assert rows[0][0] == "| *Baseline (nnU-Net)*" and rows[0][-2:] == ["-", "- |"]
    assert rows[2][0] == "| CarveMix \\| 4"  # a '|' in a label is escaped
    best = table.set_index("experiment").loc["carvemix_4"]
    assert rows[2][4] == f"**{best['Mean (%)']}**"  # best Mean in bold
    assert lines[header + 5 :] == []
    assert "sample standard deviation, ddof = 1" in caption
    assert "Student's two-sample t-test (equal variances)" in caption
    assert "Baseline (nnU-Net): seeds 0, 1, 2; CarveMix: seeds 0, 1, 2" in caption
    assert "†" not in "\n".join(lines)


def _md_rows(md: str) -> dict[str, str]:
    """Method cell -> the whole row of a Markdown table."""
    return {
        line.split(" | ")[0][2:]: line
        for line in md.splitlines()
        if line.startswith("| ") and not line.startswith(("| Method", "| ---"))
    }


def test_a_row_missing_a_configured_seed_is_marked_and_says_which(tmp_path):
    runs = [run for run in write_evaluation(tmp_path) if run[:2] != ("carvemix_2", 2)]
    write_collected(runs, tmp_path / "per_case.csv", tmp_path / "per_run.csv")
    labels = {e: v["label"] for e, v in EXPERIMENTS.items()}
    table = write_table(
        tmp_path / "per_run.csv",
        tmp_path / "t.csv",
        tmp_path / "t.md",
        ["baseline", "carvemix_2", "carvemix_4"],
        labels,
        "T",
        seeds=[0, 1, 2],
    )
    md = (tmp_path / "t.md").read_text()
    rows = _md_rows(md)
    assert list(rows) == [
        "*Baseline (nnU-Net)*",
        "CarveMix † (seed 2 missing)",
        "CarveMix \\| 4",
    ]
    assert "Seeds per row (configured: 0, 1, 2): Baseline (nnU-Net): seeds 0, 1, 2; " in md
    assert "CarveMix †: seeds 0, 1 (seed 2 missing" in md
    assert list(table["missing_seeds"]) == ["", "2", ""]
    assert list(table["n_seeds"]) == [3, 2, 3]
    # A configured seed no experiment has marks every row.
    write_table(
        tmp_path / "per_run.csv",
        tmp_path / "t.csv",
        tmp_path / "t2.md",
        ["baseline", "carvemix_4"],
        labels,
        "T",
        seeds=[0, 1, 2, 3],
    )
    assert list(_md_rows((tmp_path / "t2.md").read_text())) == [
        "*Baseline (nnU-Net)* † (seed 3 missing)",
        "CarveMix \\| 4 † (seed 3 missing)",
    ]
    # Without the configured seeds, the seeds of the table's rows are expected.
    write_table(
        tmp_path / "per_run.csv", tmp_path / "t.csv", tmp_path / "t3.md", ["carvemix_2", "baseline"]
    )
    assert list(_md_rows((tmp_path / "t3.md").read_text())) == [
        "*carvemix_2* † (seed 2 missing)",
        "baseline",
    ]


def test_caption_counts_the_held_out_cases_that_have_each_region(tmp_path):
    runs = write_evaluation(tmp_path)
    for _, seed, path in runs:  # case 2 has no ET in its reference; seed 0 predicts none there
        frame = pd.read_csv(path)
        frame.loc[2, "lesion_sens_et"] = np.nan
        frame.loc[2, "dice_et"] = np.nan if seed == 0 else 0.0
        frame.to_csv(path, index=False)
    _, per_run = write_collected(runs, tmp_path / "per_case.csv", tmp_path / "per_run.csv")
    assert set(per_run["n_ref_et"]) == {3} and set(per_run["n_ref_tc"]) == {4}
    assert sorted(set(per_run["n_dice_et"])) == [3, 4]
    out = tmp_path / "t.md"
    write_table(tmp_path / "per_run.csv", tmp_path / "t.csv", out, ["baseline"], seeds=[0, 1, 2])
    md = (tmp_path / "t.md").read_text()
    assert "Held-out cases: 4 per run." in md
    assert "ET: 3 of 4 held-out cases have ET in the reference; each of the others is" in md
    assert "the ET means rest on 3–4 cases per run" in md
    assert "TC: 4 of 4 held-out cases have TC in the reference." in md
    assert "WT: 4 of 4 held-out cases have WT in the reference." in md
    assert md.index("Held-out cases") < md.index("| Method")  # under the title


def test_caption_states_the_dice_and_hd95_conventions_and_how_brats_differs(per_run_csv, tmp_path):
    write_table(per_run_csv, tmp_path / "t.csv", tmp_path / "t.md", ["baseline"], seeds=[0, 1, 2])
    md = (tmp_path / "t.md").read_text()
    caption = md[: md.index("| Method")]
    for text in [
        "Dice per case and region is nnU-Net's (nnunetv2 compute_metrics",
        "empty in both the reference and the prediction has no Dice (NaN) and is skipped",
        "empty in the reference but predicted scores 0",
        "MONAI's compute_hausdorff_distance with percentile = 95",
        "Euclidean distances in mm (voxel spacing from the NIfTI header)",
        "symmetric",
        "Region empty in exactly one of them: the diagonal of the evaluated volume in mm",
        "an empty prediction with an empty reference scores Dice 1 and HD95 0",
        "an empty prediction with a non-empty reference scores Dice 0 and HD95 373.13",
    ]:
        assert text in caption, text


def test_p_value_is_printed_with_two_decimals_or_scientific_below_001():
    assert format_p(0.6712) == "0.67"
    assert format_p(0.0213) == "0.02"
    assert format_p(0.00042) == "4.2e-04"
    assert format_p(float("nan")) == "n/a"


def test_dice_in_percent_is_rejected_with_the_file_name(tmp_path):
    (run,) = write_evaluation(tmp_path, {"baseline": 0.6}, [0])
    frame = pd.read_csv(run[2])
    frame["dice_et"] *= 100
    frame.to_csv(run[2], index=False)
    with pytest.raises(ValueError, match=r"baseline/seed0/per_case.csv: Dice outside \[0, 1\]"):
        collect_per_case([run])


def test_a_run_given_twice_is_rejected_with_the_file_name(tmp_path):
    (run,) = write_evaluation(tmp_path, {"baseline": 0.6}, [0])
    with pytest.raises(ValueError, match=r"baseline/seed0/per_case.csv: experiment baseline seed 0 given twice"):
        collect_per_case([run, run])


def test_dice_vs_synthetic_starts_every_source_at_the_baseline(per_run_csv, tmp_path):
    per_run = pd.read_csv(per_run_csv)
    points = dice_vs_synthetic_points(per_run, EXPERIMENTS)
    assert list(points) == ["carvemix"]  # tf has no results
    frame = points["carvemix"]
    assert list(frame["n_synthetic"]) == [0, 2, 4]
    assert list(frame["experiment"]) == ["baseline", "carvemix_2", "carvemix_4"]
    runs = per_run[per_run["experiment"] == "carvemix_4"]["dice_wt"] * 100
    assert frame.loc[2, "dice_wt_mean"] == pytest.approx(runs.mean())
    assert frame.loc[2, "dice_wt_std"] == pytest.approx(runs.std(ddof=1))
    plot_dice_vs_synthetic(per_run, EXPERIMENTS, tmp_path / "fig" / "dice.png")
    assert (tmp_path / "fig" / "dice.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dice_vs_synthetic_without_results_still_writes_a_figure(tmp_path):
    empty = per_run_table(collect_per_case([]))
    assert plot_dice_vs_synthetic(empty, EXPERIMENTS, tmp_path / "dice.png") == {}
    assert (tmp_path / "dice.png").stat().st_size > 0


def make_synthetic_source(root: Path, n: int, modalities=("t1n",)) -> None:
    shape = (20, 18, 12)
    rows = []
    for i in range(n):
        case_id = f"syn_{i:04d}"
        seg = np.zeros(shape, np.uint8)
        seg[6 + i : 12 + i, 5:11, 4:8] = 2
        seg[8 + i : 10 + i, 7:9, 5:7] = 3
        for m in modalities:
            save_nifti(
                np.full(shape, 0.2 * i - 0.5, np.float32),
                np.eye(4),
                root / "cases" / case_id / f"{m}.nii.gz",
            )
        save_nifti(
            np.ones(shape, np.uint8), np.eye(4), root / "cases" / case_id / "brainmask.nii.gz"
        )
        save_nifti(seg, np.eye(4), root / "cases" / case_id / "seg.nii.gz")
        rows.append({"case_id": case_id, "source_mask": "x"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)


def test_mosaic_shows_the_first_cases_in_manifest_order(tmp_path):
    make_synthetic_source(tmp_path / "src", 5, modalities=("t1n", "t2f"))
    shown = plot_mosaic(
        tmp_path / "src" / "cases",
        tmp_path / "src" / "manifest.csv",
        tmp_path / "mosaic.png",
        ["t1n", "t2f"],
        n_cases=3,
        title="TF",
    )
    assert shown == ["syn_0000", "syn_0001", "syn_0002"]
    assert (tmp_path / "mosaic.png").read_bytes()[:4] == b"\x89PNG"


FOUR_CHANNELS = ["t1n", "t1c", "t2w", "t2f"]


def _png_width(path: Path) -> int:
    from matplotlib.image import imread

    return imread(path).shape[1]


def test_sequences_show_a_real_case_then_each_source_s_first_case(tmp_path):
    for source in ("real", "tfaug", "tf"):
        make_synthetic_source(tmp_path / source, 2, modalities=FOUR_CHANNELS)
    (tmp_path / "tf" / "cases" / "syn_0000" / "t2f.nii.gz").unlink()  # an absent channel is marked, not fatal
    sources = {s: {"manifest": tmp_path / s / "manifest.csv", "cases_dir": tmp_path / s / "cases"} for s in ("tfaug", "tf")}
    shown = plot_sequences(tmp_path / "real" / "cases" / "syn_0001", sources, tmp_path / "four.png", FOUR_CHANNELS)
    assert shown == ["syn_0001", "syn_0000", "syn_0000"]
    plot_sequences(tmp_path / "real" / "cases" / "syn_0001", sources, tmp_path / "one.png", ["t1n"])
    assert _png_width(tmp_path / "four.png") > 2.5 * _png_width(tmp_path / "one.png")  # a column per channel


def test_refinement_shows_coarse_refined_and_difference_of_every_channel(tmp_path):
    make_synthetic_source(tmp_path / "coarse", 2, modalities=FOUR_CHANNELS)
    make_synthetic_source(tmp_path / "refined", 2, modalities=FOUR_CHANNELS)
    manifest = pd.read_csv(tmp_path / "refined" / "manifest.csv")
    manifest["coarse_case"] = manifest["case_id"].iloc[::-1].to_numpy()
    manifest.to_csv(tmp_path / "refined" / "manifest.csv", index=False)
    args = (tmp_path / "coarse" / "cases", tmp_path / "refined" / "cases", tmp_path / "refined" / "manifest.csv")
    assert plot_refinement(*args, tmp_path / "four.png", FOUR_CHANNELS, n_cases=2) == ["syn_0000", "syn_0001"]
    plot_refinement(*args, tmp_path / "one.png", ["t1n"], n_cases=2)
    assert _png_width(tmp_path / "four.png") > 3 * _png_width(tmp_path / "one.png")  # three columns per channel


@pytest.mark.slow
def test_report_rules_write_every_output(tiny_demo):
    workdir, config = tiny_demo
    study = study_of(config)
    for name in study.report_outputs():
        assert (workdir / name).stat().st_size > 0, name
    per_run = pd.read_csv(workdir / layout.report_file("per_run.csv"))
    assert set(zip(per_run["experiment"], per_run["seed"])) == set(study.runs)
    for table, spec in study.tables.items():
        assert list(pd.read_csv(workdir / layout.report_file(f"{table}.csv"))["experiment"]) == spec["experiments"]
        assert (workdir / "logs" / "report_tables" / f"{table}.log").exists()


@pytest.mark.slow
def test_the_html_report_holds_the_tables_figures_and_captions(tiny_demo, tmp_path):
    workdir, config = tiny_demo
    study = study_of(config)
    run_snakemake(workdir, config, "--report", str(tmp_path / "report.html"))
    text = (tmp_path / "report.html").read_text()
    assert "Tumor Fabrication (TF) study" in text  # workflow/report/workflow.rst
    figures = [Path(name).name for name in study.report_outputs() if name.endswith(".png")]
    for name in [*figures, *(f"{table}.md" for table in study.tables), "per_run.csv"]:
        assert name in text, name
    seeds = ", ".join(str(s) for s in study.seeds)
    assert f"Configured seeds: {seeds}" in text  # workflow/report/table.rst, from the params
    assert "HD95 373.13" in text


@pytest.mark.slow
def test_a_label_reruns_only_the_tables_that_show_its_experiment(tiny_demo):
    workdir, config = tiny_demo
    study = study_of(config)
    assert [t for t, spec in study.tables.items() if "carvemix_8" in spec["experiments"]] == ["table1"]
    changed = copy.deepcopy(config)
    changed["experiments"]["carvemix_8"]["label"] = "CarveMix, relabelled"
    planned = run_snakemake(workdir, changed, "-n")
    assert re.findall(r"wildcards: table=(\S+)", planned.stdout) == ["table1"]
    assert "nnunet_train" not in planned_jobs(planned)


def test_the_report_has_the_intensity_table_and_with_several_sequences_the_sequences_figure():
    from test_study import demo_config

    from tumorfab.study.model import Study

    t1_only = Study.from_config(demo_config()).report_outputs()
    assert {layout.report_file("intensities.csv"), layout.report_file("intensities.md")} <= set(t1_only)
    assert layout.report_figure("sequences") not in t1_only
    four = Study.from_config(demo_config(data={"modalities": FOUR_CHANNELS})).report_outputs()
    assert layout.report_figure("sequences") in four
