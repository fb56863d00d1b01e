"""`snakemake fabricate` after the study: cohorts from its trained pieces, nothing of it rerun."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest

from conftest import planned_jobs, run_snakemake

COHORTS = {
    "left": {
        "source": "tfaug",
        "n_cases": 2,
        "seed": 7,
        "controls": {"location": {"mode": "hemisphere", "side": "left"}, "size_ml": [1.0, 15.0]},
    },
    # The study's seed and controls: the study's own cases (its TF-Aug layouts, then TF),
    # exported with the real training cases. Controls of other kinds (count, heterogeneity)
    # are read and measured as these are: test_fabricate_settings.py, test_fabricate_card.py.
    "as_study": {"source": "tf", "n_cases": 2, "export": {"merge_real": True}},
}


def digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.glob("*/*.nii.gz"))
    }


@pytest.mark.slow
def test_fabricate_makes_each_cohort_from_the_study_s_pieces_and_reruns_nothing_of_it(tiny_demo):
    workdir, config = tiny_demo
    fabricate = {**config, "fabricate": {"cohorts": COHORTS}}
    planned = planned_jobs(run_snakemake(workdir, fabricate, "--cores", "2", "fabricate"))  # the run's job stats
    assert planned and all(rule.startswith("fabricate") for rule in planned), planned

    results = workdir / "results"
    n_real = config["split"]["n_real_train"]
    for name, cohort in COHORTS.items():
        folder = results / "fabricate" / name
        card = json.loads((folder / "card.json").read_text())
        assert card["within_controls"]["fraction"] == 1.0, name
        assert "100 %" in (folder / "card.md").read_text()
        brats = sorted(p for p in (folder / "brats").iterdir() if p.is_dir())
        assert [p.name for p in brats] == [f"BraTS-SYN-{i:05d}-000" for i in range(cohort["n_cases"])]
        assert {f.name.rsplit("-", 1)[1] for f in brats[0].iterdir()} == {"t1n.nii.gz", "seg.nii.gz"}
        (dataset,) = (p for p in (folder / "nnUNet_raw").iterdir() if p.is_dir())
        merged = n_real if cohort.get("export", {}).get("merge_real") else 0
        assert json.loads((dataset / "dataset.json").read_text())["numTraining"] == cohort["n_cases"] + merged
    study = results / "synthetic"
    for source in ("tfaug", "tf"):
        made = digests(results / "fabricate" / "as_study" / source / "cases")
        assert made and made == {k: v for k, v in digests(study / source / "cases").items() if k in made}

    # A change to one cohort remakes that cohort only.
    changed = copy.deepcopy(fabricate)
    changed["fabricate"]["cohorts"]["left"]["seed"] = 9
    result = run_snakemake(workdir, changed, "-n", "fabricate")
    assert planned_jobs(result) == {
        "fabricate_tfaug": 1, "fabricate_export_brats": 1, "fabricate_export_nnunet": 1, "fabricate_card": 1,
        "fabricate": 1,
    }
    assert "wildcards: cohort=left" in result.stdout and "cohort=textured" not in result.stdout
