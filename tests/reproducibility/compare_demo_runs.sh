#!/usr/bin/env bash
# Two fresh runs of the demo (`make demo`'s workflow, without the HTML report)
# in two clones of this repository, at revisions A and B (default: HEAD both
# times), then a comparison of the checksums of every NIfTI (scans, synthetic
# cases, nnU-Net's images and predictions), CSV (manifests, registration,
# GAN losses, evaluations, report tables), Markdown table, intensity fit,
# generator file and nnU-Net plan. Benchmarks (timings) and nnU-Net's
# checkpoints (they hold timestamps) are left out. Exits 1 and lists the files
# that differ, if any.
#
#   bash tests/reproducibility/compare_demo_runs.sh              # rerun = same bytes
#   bash tests/reproducibility/compare_demo_runs.sh 43daabb HEAD  # a refactoring changes nothing
#
# ~14 min per run on 2 idle cores. RESULTS_A=<a finished run's repository folder>
# skips run A. Needs the repository's .venv (`make env`).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
declare -A revision=([a]="${1:-HEAD}" [b]="${2:-HEAD}")

for run in a b; do
    if [[ $run == a && -n ${RESULTS_A:-} ]]; then
        ln -s "$RESULTS_A" "$work/a"
        continue
    fi
    git clone -q "$repo" "$work/$run"
    git -C "$work/$run" checkout -q "$(git -C "$repo" rev-parse "${revision[$run]}")"
    ln -s "$repo/.venv" "$work/$run/.venv"
    start=$(date +%s)
    # PYTHONPATH: the clone's own package, not the editable install's.
    (cd "$work/$run" && PYTHONPATH="$work/$run/src" .venv/bin/snakemake \
        --cores "${CORES:-2}" --configfile config/demo.yaml > "$work/$run.log" 2>&1) || {
        tail -n 30 "$work/$run.log"
        exit 1
    }
    echo "run $run ($(git -C "$work/$run" rev-parse --short HEAD)): $(($(date +%s) - start)) s"
done

"$repo/.venv/bin/python" - "$work/a" "$work/b" <<'PYTHON'
import hashlib
import sys
from pathlib import Path

PATTERNS = [
    "results/preprocess/**/*.nii.gz",
    "results/synthetic/**/*.nii.gz",
    "results/segmentation/**/*.nii.gz",
    "results/prepare/*.csv",
    "results/preprocess/**/*.csv",
    "results/synthetic/**/*.csv",
    "results/segmentation/evaluation/**/*.csv",
    "results/report/*.csv",
    "results/report/*.md",
    "results/synthetic/*/intensity.json",
    "results/synthetic/*/generator.pt",
    "results/segmentation/plans/*.json",
    "results/segmentation/models/**/plans.json",
    "results/segmentation/models/**/dataset.json",
]
runs = [Path(p) for p in sys.argv[1:]]


def checksums(root: Path) -> dict[str, str]:
    found = {}
    for pattern in PATTERNS:
        paths = sorted(root.glob(pattern))
        print(f"{root.name}: {len(paths)} files {pattern}")
        found.update({str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths})
    return found


first, second = (checksums(run) for run in runs)
differ = sorted(name for name in first.keys() | second.keys() if first.get(name) != second.get(name))
print(f"{len(first)} files compared, {len(differ)} differ")
for name in differ:
    print(f"  differs: {name}")
sys.exit(1 if differ or not first else 0)
PYTHON
