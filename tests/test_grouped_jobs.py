"""Grouped jobs on SLURM (issue #21, item 1): the paper's study over a
BraTS 2023-sized tree (1,251 case folders) and 581 IXI heads, planned with
`snakemake -n` and the SLURM profile (conftest's `paper_sized_dry_run`),
submits at most ~100 jobs for all its preprocessing, and its DAG builds in
under a minute.

The tree is of empty files: building the DAG lists the folders but opens no
NIfTI (the `prepare` job reads the headers), so empty files plan the same jobs."""

import re
from collections import Counter

import yaml

from conftest import REPO

PROFILE = REPO / "profiles" / "slurm"
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


def test_every_group_of_the_rules_has_its_size_in_the_slurm_profile():
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert set(profile["group-components"]) == set(GROUPS.values())
    # one job per layer: a group job asks for one scan's threads and memory
    assert profile["resources"] == {"group_slots": 1}
    assert profile["set-resource-scopes"] == {"group_slots": "local"}
    assert profile["default-resources"]["group_slots"] == 1
    assert profile["keep-going"] is True
    assert "keep-incomplete" not in profile  # it would record failed outputs as complete


def test_paper_study_submits_at_most_100_jobs_for_its_preprocessing(paper_sized_dry_run):
    groups, members, single = _submissions(paper_sized_dry_run.result.stdout)
    # every per-scan job is in its group, none is submitted alone
    assert not set(single) & set(GROUPS), single
    for (group, rule), count in members.items():
        assert GROUPS.get(rule) == group, f"{rule} planned in group {group}"
    per_rule = Counter()
    for (_, rule), count in members.items():
        per_rule[rule] += count
    n_heads = paper_sized_dry_run.n_heads
    assert per_rule == {
        "skullstrip_healthy": n_heads, "register_healthy": n_heads, "normalize_healthy": n_heads,
        "normalize_real": 300, "nnunet_image_real": 300,  # split: 100 train + 200 held out
    }
    submissions = sum(groups.values()) + sum(single[rule] for rule in PREPROCESSING)
    print(f"\npaper study: {sum(per_rule.values())} per-scan jobs in {dict(groups)} group jobs; "
          f"{submissions} preprocessing submissions")
    assert submissions <= MAX_SUBMISSIONS
