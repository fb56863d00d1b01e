"""How long Snakemake takes to plan the paper's study (``snakemake -n``) on a
BraTS 2023-sized tree: 1,251 GLI case folders and 581 IXI heads, as empty
files (building the DAG opens no NIfTI file), with the SLURM profile's
grouped jobs. Prints the seconds and the planned jobs. The tests check what is
planned (``tests/test_grouped_jobs.py``); the time is measured here.

    .venv/bin/python benchmarks/dag_build.py [--cases 1251] [--heads 581]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import make_empty_tree, planned_jobs, workflow_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1251)
    parser.add_argument("--heads", type=int, default=581)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        brats, ixi = make_empty_tree(Path(tmp), args.cases, args.heads)
        config_path = Path(tmp) / "config.yaml"
        config_path.write_text(yaml.safe_dump(workflow_config(data={"brats_root": str(brats), "healthy_root": str(ixi)})))
        command = [
            str(Path(sys.executable).parent / "snakemake"), "-n", "--snakefile", str(REPO / "Snakefile"),
            "--directory", str(Path(tmp) / "run"), "--configfile", str(config_path), "--profile", str(REPO / "profiles" / "slurm"),
        ]
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if result.returncode:
        sys.exit(result.stdout[-3000:] + result.stderr[-3000:])
    jobs = planned_jobs(result)
    print(f"snakemake -n, paper study, {args.cases} cases + {args.heads} heads: {seconds:.1f} s, {sum(jobs.values())} jobs")


if __name__ == "__main__":
    main()
