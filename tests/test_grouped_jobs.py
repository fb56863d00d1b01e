"""Grouped jobs on SLURM (issue #21, item 1): the paper's study over a
BraTS 2023-sized tree (1,251 case folders) and 581 IXI heads, planned with
`snakemake -n` and the SLURM profile, submits at most ~100 jobs for all its
preprocessing, and its DAG builds in under a minute.

The tree is of empty files: building the DAG lists the folders but opens no
NIfTI (the `prepare` job reads the headers), so empty files plan the same jobs."""

import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SNAKEMAKE, make_empty_tree, workflow_config

PROFILE = REPO / "profiles" / "slurm"
N_CASE_FOLDERS = 1251  # BraTS 2023 GLI training
N_HEADS = 581  # IXI T1
#: The per-scan rules and their group (workflow/rules/*.smk, `group:`).
GROUPS = {
    "skullstrip_healthy": "skullstrip",
    "register_healthy": "healthy",
    "normalize_healthy": "healthy",
    "normalize_real": "real",
    "nnunet_image_real": "real",
}
#: Preprocessing: the per-scan rules and what they need that is not grouped.
PREPROCESSING = set(GROUPS) | {"prepare"}
MAX_SUBMISSIONS = 100


def _submissions(dry_run: str) -> tuple[Counter, Counter, Counter]:
    """(group jobs per group, member jobs per rule, ungrouped jobs per rule)
    from a dry run's job list: a group job prints "Group job NAME (...)" and
    its jobs indented below it; an ungrouped job is a `rule NAME:` at column 0."""
    groups, members, single = Counter(), Counter(), Counter()
    current = None
    for line in dry_run.splitlines():
        if match := re.search(r"Group job (\S+) \(jobs in lexicogr\. order\):", line):
            current = match.group(1)
            groups[current] += 1
        elif match := re.match(r"    (?:local)?rule (\w+):$", line):
            members[(current, match.group(1))] += 1
        elif match := re.match(r"(?:local)?rule (\w+):$", line):
            current = None
            single[match.group(1)] += 1
    return groups, members, single


@pytest.fixture(scope="module")
def paper_dry_run(tmp_path_factory) -> tuple[str, float]:
    root = tmp_path_factory.mktemp("paper_sized")
    brats, ixi = make_empty_tree(root, N_CASE_FOLDERS, N_HEADS)
    config = workflow_config(data={"brats_root": str(brats), "healthy_root": str(ixi)})
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    command = [
        str(SNAKEMAKE), "-n",
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(root / "run"),
        "--profile", str(PROFILE),
        "--configfile", str(config_path),
    ]
    start = time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stdout[-5000:]
    return result.stdout, seconds


def test_every_group_of_the_rules_has_its_size_in_the_slurm_profile():
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert set(profile["group-components"]) == set(GROUPS.values())
    # one job per layer: a group job asks for one scan's threads and memory
    assert profile["resources"] == {"group_slots": 1}
    assert profile["set-resource-scopes"] == {"group_slots": "local"}
    assert profile["default-resources"]["group_slots"] == 1
    assert profile["keep-going"] is True
    assert "keep-incomplete" not in profile  # it would record failed outputs as complete


def test_paper_study_submits_at_most_100_jobs_for_its_preprocessing(paper_dry_run):
    output, seconds = paper_dry_run
    groups, members, single = _submissions(output)
    # every per-scan job is in its group, none is submitted alone
    assert not set(single) & set(GROUPS), single
    for (group, rule), count in members.items():
        assert GROUPS.get(rule) == group, f"{rule} planned in group {group}"
    per_rule = Counter()
    for (_, rule), count in members.items():
        per_rule[rule] += count
    assert per_rule == {
        "skullstrip_healthy": N_HEADS, "register_healthy": N_HEADS, "normalize_healthy": N_HEADS,
        "normalize_real": 300, "nnunet_image_real": 300,  # split: 100 train + 200 held out
    }
    submissions = sum(groups.values()) + sum(single[rule] for rule in PREPROCESSING)
    print(f"\npaper study: {sum(per_rule.values())} per-scan jobs in {dict(groups)} group jobs; "
          f"{submissions} preprocessing submissions; dry run {seconds:.1f} s")
    assert submissions <= MAX_SUBMISSIONS


def test_paper_study_dag_builds_in_under_a_minute(paper_dry_run):
    _, seconds = paper_dry_run
    assert seconds < 60, f"snakemake -n took {seconds:.0f} s"
