"""Declared resources cover the study's measured cost (issue #21, item 2).

`benchmarks/study_cost.csv` holds each rule's cost per unit of work (seconds
and peak memory, measured on the real scans or, for the GPU rules where no
GPU was lent, the assumption the row names); `benchmarks/study_cost.py`
projects it onto the paper's study (`config/config.yaml`: units per job).
Here `snakemake -n --profile slurm` plans the paper's config over a paper-sized
tree of empty files (conftest's `paper_sized_dry_run`, which
test_grouped_jobs.py reads too) and every job's declared
`runtime` and `mem_mb` (as the dry run prints them, the profile's per-scan
runtimes included) must cover its projection times the margins
(`RUNTIME_MARGIN`, `MEM_MARGIN` in the script)."""

import importlib.util
import re
import sys
from collections import defaultdict

import pytest

from conftest import REPO


def local_rules() -> set[str]:
    """Rules marked `localrule: True` in workflow/rules/*.smk: they run on the submitting host, not as
    SLURM jobs (the dry run prints them with the profile's default resources)."""
    local = set()
    for path in (REPO / "workflow" / "rules").glob("*.smk"):
        rule = None
        for line in path.read_text().splitlines():
            if match := re.match(r"\s*rule (\w+):", line):
                rule = match.group(1)
            elif rule and line.strip() == "localrule: True":
                local.add(rule)
    return local


#: Jobs that do no work of their own (`all`) or run on the submitting host.
NOT_COSTED = {"all"} | local_rules()


def _study_cost():
    spec = importlib.util.spec_from_file_location("study_cost", REPO / "benchmarks" / "study_cost.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["study_cost"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


STUDY_COST = _study_cost()


def declared_resources(dry_run: str) -> dict[str, set[tuple[int, int]]]:
    """Rule -> the (runtime, mem_mb) pairs its planned jobs declare: each job of a
    dry run prints `rule NAME:` then, among its fields, `resources: ..., mem_mb=M, ..., runtime=R, ...`
    (local rules print no resources)."""
    declared, rule = defaultdict(set), None
    for line in dry_run.splitlines():
        if match := re.match(r"\s*(?:local)?rule (\w+):$", line):
            rule = match.group(1)
        elif rule and (match := re.match(r"\s*resources: (.*)$", line)):
            fields = dict(item.split("=", 1) for item in match.group(1).split(", "))
            declared[rule].add((int(fields["runtime"]), int(fields["mem_mb"])))
            rule = None
    return declared


@pytest.fixture(scope="module")
def declared(paper_sized_dry_run) -> dict[str, set[tuple[int, int]]]:
    return declared_resources(paper_sized_dry_run.result.stdout)


@pytest.fixture(scope="module")
def projection() -> dict[str, dict]:
    from tumorfab.config import study_config

    costs = STUDY_COST.read_csv()
    rows = STUDY_COST.projection_rows(costs, study_config(REPO), STUDY_COST.N_HEADS, STUDY_COST.volume_mb_from(costs))
    return {row["rule"]: row for row in rows}


def test_the_cost_table_has_every_column_and_a_load_average_per_figure():
    with open(STUDY_COST.CSV_PATH) as handle:
        header = handle.readline().strip().split(",")
    assert header == STUDY_COST.FIELDS
    for cost in STUDY_COST.read_csv().values():
        assert cost.seconds > 0 and cost.peak_mb > 0, cost
        assert cost.device in {"cpu", "gpu", "gpu (assumed)"}, cost
        assert cost.load, cost
        # a GPU figure that was not measured says it is an assumption
        assert (cost.device == "gpu (assumed)") <= ("ASSUMED" in cost.how), cost


def test_every_planned_job_of_the_paper_study_has_a_cost(declared, projection):
    assert set(declared) - NOT_COSTED <= set(projection), set(declared) - NOT_COSTED - set(projection)


def test_declared_runtime_covers_the_projection_with_its_margin(declared, projection):
    short = {
        rule: (min(runtime for runtime, _ in declared[rule]), row["need_runtime"], row["units"])
        for rule, row in projection.items()
        if min(runtime for runtime, _ in declared[rule]) < row["need_runtime"]
    }
    assert not short, f"declared runtime (min) < projection x {STUDY_COST.RUNTIME_MARGIN}: {short}"


def test_declared_memory_covers_the_projection_with_its_margin(declared, projection):
    short = {
        rule: (min(mem for _, mem in declared[rule]), row["need_mem_mb"])
        for rule, row in projection.items()
        if min(mem for _, mem in declared[rule]) < row["need_mem_mb"]
    }
    assert not short, f"declared mem_mb < projection x {STUDY_COST.MEM_MARGIN}: {short}"

