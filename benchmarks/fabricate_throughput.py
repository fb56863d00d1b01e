"""Fabrication throughput per case at BraTS size: TF-Aug alone, and TF (TF-Aug then TF-GAN refinement).

Inputs, built from the real scans in ``../shared/data/real`` with the
functions the workflow's rules call (``workflow/scripts/``), settings from
the config schema's defaults (``tests/helpers/schema_defaults.py``):

* the real case BraTS-GLI-00000-000 (240x240x155, 1 mm, its four
  sequences) normalized as the ``normalize_real`` rule does
  (``normalize_real_case``): TF-Aug's mask bank;
* one real healthy head, ``chris_t1``, skull-stripped (``skullstrip``, the
  schema's method: deepbet without SynthStrip weights), registered onto the
  BraTS case (``register_to_reference``: N4 then SyN, one ANTs thread) and
  normalized (``normalize_healthy_scan``), as the ``skullstrip_healthy``,
  ``register_healthy`` and ``normalize_healthy`` rules do;
* an intensity model for Eq. 1 (``save_intensity(FitResult(a, b, ...))``
  with plausible a, b; fitted values do not change the time);
* a TF-GAN generator file at the paper's widths (the schema's ``tfgan``),
  saved as ``train_tfgan`` saves it, with **untrained** weights (drawn as
  training draws them; the time of G does not depend on its weights).

T1 only (``t1n``): the paper's study; a four-sequence study adds the fills
of the other channels to TF-Aug and three channels to G's input and output.

Then times, each step in a fresh process (so that its peak RSS is its own):

* ``generate_tfaug`` for ``--cases`` cases with the schema's ``tfaug``
  (the paper preset), and again with the mass effect on;
* ``generate_tf`` (``tumorfab.synthesis.tfgan.refine``: brain-box sliding
  window of 128³, overlap 0.5, Gaussian blending; ``mixed_precision: auto``,
  so fp32 on the CPU, bf16/fp16 autocast on a GPU) on the first
  ``--tf-cases`` of those TF-Aug cases.

Seconds per case are each call's wall time over its cases (the call's
once-per-run work, the mask bank or loading G, is included, spread over its
cases). torch runs ``--threads`` threads on the CPU (the ``fabricate_tfaug``
rule declares 1: it uses torch only to place masks and, with the mass effect,
to warp). CPU seconds per case are the step process's CPU time (all its
threads, ``time.process_time``) over its cases: near ``threads`` x the wall
time when the step had its cores, less when neighbours took them. Peak
memory: the step's process's peak RSS (``resource.getrusage``, imports
included), and on a GPU ``torch.cuda.max_memory_allocated``. The first and
last lines say how loaded the machine was (``os.getloadavg``).

Run: ``python benchmarks/fabricate_throughput.py [--cases N] [--tf-cases M]
[--work-dir DIR]`` (about 10 minutes on 2 idle CPU cores, most of it one
refinement and the registration; a GPU refines every case). Without
``--work-dir`` the work folder is temporary and removed at the end; with it
the folder is kept, and a rerun reuses its preprocessed inputs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from helpers.schema_defaults import schema_defaults  # noqa: E402  (the config schema's defaults)

REAL = REPO.parent / "shared" / "data" / "real"
CASE = "BraTS-GLI-00000-000"
CHANNELS = ("t1n", "t1c", "t2w", "t2f")
HEAD = "chris_t1"
MODALITIES = ["t1n"]
SEED = 2025
#: Eq. 1's (a, b) per label (NCR, ED, ET) on t1n, as the tests make them.
INTENSITY_A = [[0.6, 1.2, 1.4]]
INTENSITY_B = [[-0.5, 0.1, 0.3]]
GiB = 1024**3


@dataclass
class Row:
    step: str
    device: str
    cases: int
    seconds: float
    cpu_seconds: float
    rss_gib: float
    cuda_gib: float | None = None
    note: str = ""


# --- what runs in each step's own process -------------------------------------------------


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GiB  # Linux: KiB


def _torch_setup(threads: int):
    import torch

    torch.set_num_threads(threads)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    return torch


def _cuda_peak_gib(torch) -> float | None:
    return torch.cuda.max_memory_allocated() / GiB if torch.cuda.is_available() else None


def prepare_inputs(work: Path) -> dict:
    """The real case and the healthy head as the workflow's preprocessing writes them;
    returns seconds per stage (an empty dict where the folders were there already)."""
    from tumorfab.preprocess.normalize import normalize_healthy_scan, normalize_real_case
    from tumorfab.preprocess.registration import register_to_reference
    from tumorfab.study.settings import StageSettings

    settings = StageSettings.from_config(schema_defaults())
    seconds = {}
    brats = REAL / "brats" / CASE
    real_dir = work / "preprocess" / "real" / CASE
    if not (real_dir / "seg.nii.gz").exists():
        start = time.perf_counter()
        normalize_real_case(
            {c: brats / f"{CASE}-{c}.nii.gz" for c in CHANNELS}, brats / f"{CASE}-seg.nii.gz", real_dir,
            settings.normalize, remap_label_4_to_3=schema_defaults()["data"]["remap_label_4_to_3"],
        )
        seconds["normalize_real (4 sequences)"] = time.perf_counter() - start
    healthy_dir = work / "preprocess" / "healthy" / HEAD
    if not (healthy_dir / "brainmask.nii.gz").exists():
        from tumorfab.preprocess.skullstrip import skullstrip

        stripped, registered = work / "stripped" / HEAD, work / "registered" / HEAD
        start = time.perf_counter()
        result = skullstrip(
            REAL / "healthy" / f"{HEAD}.nii.gz", stripped / "t1n.nii.gz", stripped / "brainmask.nii.gz",
            stripped / "qc.png", failure_qc=stripped / "refused.png", settings=settings.skullstrip, seed=SEED,
            threads=2 if settings.skullstrip.synthstrip_weights else 1,  # the rule's threads
        )
        seconds[f"skullstrip ({result['method']}, {result['brain_volume_ml']:.0f} ml)"] = time.perf_counter() - start
        start = time.perf_counter()
        register_to_reference(
            stripped / "t1n.nii.gz", stripped / "brainmask.nii.gz", brats / f"{CASE}-t1n.nii.gz",
            brats / f"{CASE}-seg.nii.gz", registered / "t1n.nii.gz", registered / "brainmask.nii.gz",
            registered / "qc.png", settings=settings.registration, bias_correction=settings.bias_correction, seed=SEED,
        )
        seconds[f"register ({settings.registration.type_of_transform}, N4 first)"] = time.perf_counter() - start
        start = time.perf_counter()
        normalize_healthy_scan(
            registered / "t1n.nii.gz", registered / "brainmask.nii.gz", healthy_dir, "t1n", settings.normalize
        )
        seconds["normalize_healthy"] = time.perf_counter() - start
    return seconds


def write_models(work: Path) -> None:
    """The intensity model and an untrained generator file at the paper's widths (as ``train_tfgan`` saves it)."""
    import numpy as np

    from tumorfab.synthesis.gan import save_torch
    from tumorfab.synthesis.gan_settings import TFGANSettings
    from tumorfab.synthesis.tfaug.intensity_fit import FitResult, save_intensity
    from tumorfab.synthesis.tfgan.networks import build_networks

    save_intensity(
        FitResult(np.array(INTENSITY_A, np.float32), np.array(INTENSITY_B, np.float32), 1.0, 0.5),
        MODALITIES, work / "intensity.json",
    )
    tfgan = TFGANSettings.from_config(schema_defaults()["tfgan"])
    generator, _ = build_networks(tfgan, len(MODALITIES), SEED)
    record = {
        "generator": generator.state_dict(),
        "n_modalities": len(MODALITIES),
        "modalities": list(MODALITIES),
        "tfgan": tfgan.generator_record(len(MODALITIES)),
        "seed": SEED,
        "steps": 0,
    }
    save_torch(record, work / "generator.pt")


def run_tfaug(work: Path, name: str, n_cases: int, mass_effect: bool, threads: int) -> dict:
    torch = _torch_setup(threads)
    from tumorfab.synthesis.tfaug.generate import generate_tfaug
    from tumorfab.synthesis.tfaug.settings import TFAugSettings

    overrides = {"tfaug": {"mass_effect": {"enabled": True}}} if mass_effect else {}
    tfaug = TFAugSettings.from_config(schema_defaults(overrides)["tfaug"])
    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    start, cpu = time.perf_counter(), time.process_time()
    manifest = generate_tfaug(
        [work / "preprocess" / "real" / CASE], [work / "preprocess" / "healthy" / HEAD], work / "intensity.json",
        out / "cases", out / "manifest.csv", n_cases, seed=SEED, modalities=MODALITIES, settings=tfaug,
    )
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    volumes = ", ".join(f"{v:.0f}" for v in manifest.volume_ml)
    return {"seconds": seconds, "cpu": cpu, "rss": _peak_rss_gib(), "cuda": _cuda_peak_gib(torch),
            "note": f"lesions {volumes} ml"}


def refine_windows(brainmask_path: Path, window: int, overlap: float) -> tuple[str, int]:
    """The brain box ``gan.brain_box_inference`` refines and its number of windows (MONAI's count)."""
    import nibabel as nib
    import numpy as np
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    from tumorfab.synthesis.gan import BRAIN_MARGIN

    brain = np.asarray(nib.load(str(brainmask_path)).dataobj) > 0
    inside = np.argwhere(brain)
    lo, hi = np.maximum(inside.min(0) - BRAIN_MARGIN, 0), np.minimum(inside.max(0) + 1 + BRAIN_MARGIN, brain.shape)
    box = [int(b - a) for a, b in zip(lo, hi)]
    padded = [max(s, window) for s in box]
    roi = (window,) * 3
    interval = _get_scan_interval(padded, roi, 3, (overlap,) * 3)
    return "x".join(map(str, box)), len(dense_patch_slices(padded, roi, interval))


def run_refine(work: Path, coarse: str, n_cases: int, threads: int) -> dict:
    torch = _torch_setup(threads)
    from tumorfab.device import resolve_device
    from tumorfab.synthesis.gan import autocast_dtype
    from tumorfab.synthesis.gan_settings import TFGANSettings
    from tumorfab.synthesis.tfgan.refine import generate_tf

    tfgan = TFGANSettings.from_config(schema_defaults()["tfgan"])
    out = work / "tf"
    shutil.rmtree(out, ignore_errors=True)
    start, cpu = time.perf_counter(), time.process_time()
    manifest = generate_tf(
        work / coarse / "manifest.csv", work / coarse / "cases", work / "generator.pt", out / "cases",
        out / "manifest.csv", n_cases, MODALITIES, seed=SEED, tfgan=tfgan, threads=threads,
    )
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    dtype = autocast_dtype(tfgan.mixed_precision, resolve_device())
    precision = "fp32" if dtype is None else str(dtype).removeprefix("torch.")
    box, windows = refine_windows(
        work / coarse / "cases" / manifest.coarse_case[0] / "brainmask.nii.gz", tfgan.window, tfgan.overlap
    )
    note = (f"G widths {list(tfgan.generator_widths)}, untrained weights; {precision}; brain box {box}: "
            f"{windows} windows of {tfgan.window}³ at overlap {tfgan.overlap}")
    return {"seconds": seconds, "cpu": cpu, "rss": _peak_rss_gib(), "cuda": _cuda_peak_gib(torch), "note": note}


def in_own_process(function, *args):
    """``function(*args)`` in a fresh (spawned) process: its own peak RSS, its own CUDA context."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


# --- the report ---------------------------------------------------------------------------


def device_name() -> tuple[str, bool]:
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})", True
    return "cpu", False


def load_line(when: str) -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {when}: {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min) on {os.cpu_count()} CPUs"


def print_table(rows: list[Row], has_gpu: bool) -> None:
    header = ["step", "device", "cases", "s / case", "CPU s / case", "peak RSS"] + (["peak CUDA"] if has_gpu else [])
    lines = [header + ["note"], ["---", "---"] + ["---:"] * (len(header) - 2) + ["---"]]
    for row in rows:
        cuda = [f"{row.cuda_gib:.2f} GiB" if row.cuda_gib is not None else "–"] if has_gpu else []
        lines.append([row.step, row.device, str(row.cases), f"{row.seconds:.1f}", f"{row.cpu_seconds:.1f}",
                      f"{row.rss_gib:.2f} GiB", *cuda, row.note])
    for line in lines:
        print("| " + " | ".join(line) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=4, help="TF-Aug cases per run (default 4)")
    parser.add_argument("--tf-cases", type=int, default=None,
                        help="TF-Aug cases refined by TF-GAN (default: 1 on the CPU, --cases on a GPU)")
    parser.add_argument("--threads", type=int, default=2, help="torch's CPU threads (default 2)")
    parser.add_argument("--work-dir", type=Path,
                        help="keep the work folder here, and reuse the preprocessed inputs already in it "
                             "(default: a temporary folder, removed at the end)")
    args = parser.parse_args()
    if not REAL.is_dir():
        sys.exit(f"{REAL} is not there: the real scans are needed (see its README.md)")
    device, has_gpu = device_name()
    tf_cases = min(args.tf_cases or (args.cases if has_gpu else 1), args.cases)
    print(load_line("at start"))
    print(f"device: {device}; torch threads {args.threads}; T1 only (t1n); seed {SEED}")
    with tempfile.TemporaryDirectory(prefix="fabricate_throughput_") as temporary:
        work = (args.work_dir or Path(temporary)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        prepared = in_own_process(prepare_inputs, work)
        in_own_process(write_models, work)
        print(f"inputs in {work} ({time.perf_counter() - start:.0f} s with process start-up):")
        for stage, seconds in prepared.items():
            print(f"  {stage}: {seconds:.1f} s")
        if not prepared:
            print("  preprocessed inputs reused from the work folder")
        rows = []
        for name, mass_effect, label in (("tfaug", False, "TF-Aug (paper preset)"),
                                         ("tfaug_mass", True, "TF-Aug + mass effect")):
            result = in_own_process(run_tfaug, work, name, args.cases, mass_effect, args.threads)
            rows.append(Row(label, "cpu", args.cases, result["seconds"] / args.cases, result["cpu"] / args.cases,
                            result["rss"], result["cuda"], result["note"]))
            print(f"{label}: {result['seconds']:.1f} s for {args.cases} cases", flush=True)
        result = in_own_process(run_refine, work, "tfaug", tf_cases, args.threads)
        refine = Row("TF-GAN refinement", device.split(" ")[0], tf_cases, result["seconds"] / tf_cases,
                     result["cpu"] / tf_cases, result["rss"], result["cuda"], result["note"])
        rows.append(refine)
        print(f"TF-GAN refinement: {result['seconds']:.1f} s for {tf_cases} cases", flush=True)
        tfaug = rows[0]
        rows.append(Row("TF = TF-Aug + refinement", refine.device, tf_cases, tfaug.seconds + refine.seconds,
                        tfaug.cpu_seconds + refine.cpu_seconds, max(tfaug.rss_gib, refine.rss_gib), refine.cuda_gib,
                        "the two rows above per case (paper preset)"))
    print()
    print_table(rows, has_gpu)
    print()
    print(load_line("at end"))
    if not has_gpu:
        print("no GPU here: TF-Aug is numpy on the CPU anyway; the refinement's GPU row needs a CUDA machine "
              "(same script)")
    if args.work_dir is None:
        print("(temporary work folder removed)")


if __name__ == "__main__":
    main()
