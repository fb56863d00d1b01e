"""The paper study's cost: each rule's cost per unit, measured on the real scans, projected to the study.

Per unit of work, on the real scans in ``../shared/data/real`` at BraTS size
(the case BraTS-GLI-00000-000, 240x240x155 at 1 mm; the real head
``chris_t1``), T1 only (the paper's study), with the functions the
workflow's rules call and the paper's settings (``config/config.yaml`` and
the schema's defaults), each step in a fresh process (its peak RSS is its
own, imports included):

* per healthy head: skull strip (deepbet, the default), N4 + SyN
  registration onto the BraTS case (one ANTs thread, as the rule runs it),
  normalization;
* per real case: ``normalize_real_case``, the nnU-Net image conversion,
  nnU-Net's fingerprint + plan and its preprocessing of one case (the plan
  made on that case), CarveMix, the evaluation of one prediction (Dice,
  HD95, lesion sensitivity), the realism features (the case loaded and F,
  the first 3 encoder stages, over the whole volume);
* per TF-Aug case (paper preset);
* per training step of TF-GAN at 128³ (batch 1, paper widths): on the CPU a
  64³ step is timed and scaled by the step's counted FLOPs (128³ / 64³;
  ``torch.utils.flop_counter`` on fake tensors, which equals the voxel ratio
  for these fully convolutional nets); ``benchmarks/tfgan_step.py`` timed the
  128³ step itself at 182 s (README);
* per refined volume: read from ``benchmarks/fabricate_throughput.py``'s
  measurement (README, "Fabricated cohorts"), or remeasured with
  ``--measure-refine``;
* per nnU-Net training iteration and per predicted volume: the network of the
  plan made on the real case, forward + backward of a batch at 64³ timed on
  the CPU and scaled by FLOPs to the planned patch; a prediction is the
  plan's sliding window (tile step 0.5, 8 mirrorings) over the cropped case.

On a GPU (``torch.cuda.is_available()``) the GAN step, F, and nnU-Net's
iteration are timed there at full size, with peak CUDA memory. Without one,
the GPU rules' figures are an **assumption**, said so in every row: one
nnU-Net 3d_fullres training iteration (patch ~128³, batch 2, fp16) takes
:data:`ASSUMED_GPU_NNUNET_ITERATION_S` on an A100-class GPU (an epoch of 250
iterations in ~150 s, the order nnU-Net v2's users report for BraTS; not
measured here), and every other GPU network cost is that figure scaled by
its counted FLOPs (same achieved FLOP rate), times :data:`GPU_SLACK` for
the smaller, less efficient kernels of the GANs. Host (CPU) work of GPU rules
(loading, saving) is measured on the CPU and added.

Writes ``benchmarks/study_cost.csv`` (one row per rule: unit, seconds per
unit, peak memory MB per unit, device, load average, how measured) and prints
the projection of the study in ``config/config.yaml`` (1,251 BraTS case
folders, ``split``, 581 healthy heads, the experiments' ``n_synthetic`` and
seeds, nnU-Net's epochs x iterations, the GANs' epochs) as a Markdown table:
CPU-hours, GPU-hours, peak memory, disk per rule and in total, and per job
the projection x margin against the runtime and mem_mb the rule declares.

Run: ``nice -n 5 .venv/bin/python benchmarks/study_cost.py [--heads 581]
[--measure-refine] [--work-dir DIR [--reuse]]`` (about 5 minutes on 2 busy CPU cores, most of it
the registration, nnU-Net's planning and the timed network steps); ``--project-only`` reprints the
projection from the CSV without measuring; ``--reuse`` keeps each step's result in the work folder and
reads it back on a rerun (to resume a broken run).
"""

from __future__ import annotations

import argparse
import csv
import math
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
REAL = REPO.parent / "shared" / "data" / "real"
CSV_PATH = REPO / "benchmarks" / "study_cost.csv"
CASE = "BraTS-GLI-00000-000"
HEAD = "chris_t1"
MODALITIES = ["t1n"]
SEED = 2025
N_BRATS_FOLDERS = 1251  # BraTS 2023 GLI training
N_HEADS = 581  # IXI T1
MB = 1e6

#: Margins the declared resources must leave over a job's projection.
RUNTIME_MARGIN = 2.0
MEM_MARGIN = 1.5

#: ASSUMPTION (no GPU here): one nnU-Net 3d_fullres training iteration on an A100-class GPU, seconds.
ASSUMED_GPU_NNUNET_ITERATION_S = 0.6
#: ASSUMPTION: the GANs' and F's kernels reach this fraction of nnU-Net's achieved FLOP rate (1 / slack).
GPU_SLACK = 2.0
#: ASSUMPTION: host memory of an nnU-Net training / prediction job (8 augmentation workers), MB.
ASSUMED_NNUNET_HOST_MB = 20000
#: ASSUMPTION: a report table's work on the study's CSVs (24 runs x 200 held-out cases), beyond its imports.
ASSUMED_TABLE_S = 30.0
ASSUMED_TABLE_MB = 200.0
#: (An nnU-Net model folder's disk is estimated from the planned network's parameters: weights, SGD
#: momentum and a second checkpoint, 3 x the fp32 weights.)
#: The refinement measured by benchmarks/fabricate_throughput.py (README, "Fabricated cohorts").
README_REFINE = {"seconds": 151.0, "rss_mb": 9.0 * 1024**3 / MB, "load": "3-5",
                 "how": "read: benchmarks/fabricate_throughput.py, 2 CPU threads, fp32 (README)"}
README_TFGAN_128_CPU_S = 182.0  # benchmarks/tfgan_step.py, 128³ fp32 step, 2 CPU cores (README)


# --- measuring: each function runs in its own spawned process ------------------------------


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB  # Linux: KiB


def _load() -> float:
    return os.getloadavg()[0]


def _timed(function, *args, **kwargs) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    function(*args, **kwargs)
    return time.perf_counter() - start, time.process_time() - cpu


def _size_mb(path: Path) -> float:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size / MB
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / MB


def _settings():
    from tumorfab.config import study_config
    from tumorfab.study.settings import StageSettings

    return StageSettings.from_config(study_config(REPO))


def m_skullstrip(work: Path) -> dict:
    import torch

    torch.set_num_threads(1)
    from tumorfab.preprocess.skullstrip import skullstrip

    settings = _settings()
    out = work / "stripped"
    load = _load()
    start, cpu = time.perf_counter(), time.process_time()
    result = skullstrip(
        REAL / "healthy" / f"{HEAD}.nii.gz", out / "t1n.nii.gz", out / "brainmask.nii.gz",
        out / "qc.png", failure_qc=out / "refused.png", settings=settings.skullstrip, seed=SEED, threads=1,
    )
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu": cpu, "rss_mb": _rss_mb(), "disk_mb": _size_mb(out), "load": load,
            "how": f"measured: skullstrip(), {result['method']}, 1 thread, {result['brain_volume_ml']:.0f} ml"}


def m_register(work: Path) -> dict:
    from tumorfab.preprocess.registration import register_to_reference

    settings = _settings()
    brats, stripped, out = REAL / "brats" / CASE, work / "stripped", work / "registered"
    load = _load()
    seconds, cpu = _timed(
        register_to_reference, stripped / "t1n.nii.gz", stripped / "brainmask.nii.gz", brats / f"{CASE}-t1n.nii.gz",
        brats / f"{CASE}-seg.nii.gz", out / "t1n.nii.gz", out / "brainmask.nii.gz", out / "qc.png",
        settings=settings.registration, bias_correction=settings.bias_correction, seed=SEED,
    )
    return {"seconds": seconds, "cpu": cpu, "rss_mb": _rss_mb(), "disk_mb": _size_mb(out), "load": load,
            "how": f"measured: register_to_reference(), N4 + {settings.registration.type_of_transform}, 1 ANTs thread"}


def m_normalize_healthy(work: Path) -> dict:
    from tumorfab.preprocess.normalize import normalize_healthy_scan

    settings = _settings()
    out = work / "preprocess" / "healthy" / HEAD
    load = _load()
    seconds, cpu = _timed(normalize_healthy_scan, work / "registered" / "t1n.nii.gz",
                          work / "registered" / "brainmask.nii.gz", out, "t1n", settings.normalize)
    return {"seconds": seconds, "cpu": cpu, "rss_mb": _rss_mb(), "disk_mb": _size_mb(out), "load": load,
            "how": "measured: normalize_healthy_scan()"}


def m_normalize_real(work: Path) -> dict:
    from tumorfab.preprocess.normalize import normalize_real_case

    settings = _settings()
    brats, out = REAL / "brats" / CASE, work / "preprocess" / "real" / CASE
    load = _load()
    seconds, cpu = _timed(normalize_real_case, {m: brats / f"{CASE}-{m}.nii.gz" for m in MODALITIES},
                          brats / f"{CASE}-seg.nii.gz", out, settings.normalize, remap_label_4_to_3=False)
    return {"seconds": seconds, "cpu": cpu, "rss_mb": _rss_mb(), "disk_mb": _size_mb(out), "load": load,
            "how": "measured: normalize_real_case(), t1n"}


def m_prepare(work: Path) -> dict:
    import nibabel as nib

    load = _load()
    start = time.perf_counter()
    for name in ("t1n", "t1c", "t2w", "t2f", "seg"):
        image = nib.load(str(REAL / "brats" / CASE / f"{CASE}-{name}.nii.gz"))
        image.header.get_data_shape(), image.affine  # noqa: B018 (what prepare reads)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "cpu": seconds, "rss_mb": _rss_mb(), "disk_mb": 0.001, "load": load,
            "how": "measured: the 5 NIfTI headers of a case folder read (nibabel)"}


def m_nnunet(work: Path, device: str) -> dict:
    """Image conversion, fingerprint + plan, preprocessing of one case; the plan's network timed and counted."""
    from tumorfab.segmentation import dataset

    settings = _settings()
    root = work / "nnunet"
    shutil.rmtree(root, ignore_errors=True)
    case_dir = work / "preprocess" / "real" / CASE
    result = {}
    load = _load()
    seconds, cpu = _timed(dataset.convert_real_case, case_dir, root / "images" / CASE, MODALITIES)
    result["image"] = {"seconds": seconds, "cpu": cpu, "disk_mb": _size_mb(root / "images" / CASE), "load": load,
                       "rss_mb": _rss_mb(), "how": "measured: dataset.convert_real_case()"}
    import torch

    torch.set_num_threads(2)
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from tumorfab.segmentation import preprocessed
    from tumorfab.segmentation.plans import plan_experiment
    raw = dataset.build_raw_dataset(root / "raw", "baseline", MODALITIES, [CASE], [], root / "images",
                                    case_dir.parent)
    load = _load()
    start = time.perf_counter()
    plans = plan_experiment(raw, root / "plans.json", root / "fingerprint.json", settings.segmentation.plan,
                            num_processes=1)
    result["plan"] = {"seconds": time.perf_counter() - start, "disk_mb": 0.1, "load": load,
                      "how": "measured: plan_experiment() on 1 case (fingerprint + plan), 1 process"}
    configuration = settings.segmentation.plan.configuration
    load = _load()
    seconds, cpu = _timed(preprocessed.preprocess_real, root / "plans.json", MODALITIES, [CASE], root / "images",
                          case_dir.parent, root / "preprocessed", configuration)
    result["preprocess"] = {"seconds": seconds, "cpu": cpu, "disk_mb": _size_mb(root / "preprocessed"),
                            "load": load, "how": "measured: preprocessed.preprocess_real(), 1 case"}
    result["rss_mb_preprocess"] = _rss_mb()

    config = PlansManager(plans).get_configuration(configuration)
    patch, batch = list(config.patch_size), config.batch_size

    def build():
        return get_network_from_plans(
            config.network_arch_class_name, config.network_arch_init_kwargs,
            config.network_arch_init_kwargs_req_import, len(MODALITIES), 3, deep_supervision=True,
        )

    net = build()
    n_params = sum(p.numel() for p in net.parameters())
    flops_train = count_flops(build, (batch, len(MODALITIES), *patch), backward=True)
    flops_fwd = count_flops(build, (1, len(MODALITIES), *patch), backward=False)
    small = (2, len(MODALITIES), 64, 64, 64)
    flops_small = count_flops(build, small, backward=True)
    run_on = torch.device(device)
    net = net.to(run_on)
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.99, nesterov=True)
    shape = (batch, len(MODALITIES), *patch) if device == "cuda" else small

    def step():
        x = torch.randn(shape, device=run_on)
        with torch.autocast(run_on.type, dtype=torch.float16, enabled=device == "cuda"):
            out = net(x)
            loss = sum(o.float().mean() for o in out)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up
    load = _load()
    start = time.perf_counter()
    step()
    step_s = time.perf_counter() - start
    result.update(
        patch=patch, batch=batch, n_params=n_params, flops_train=flops_train, flops_fwd=flops_fwd,
        flops_small=flops_small, step_s=step_s, step_shape=list(shape), step_load=load, rss_mb=_rss_mb(),
        cuda_mb=torch.cuda.max_memory_allocated() / MB if device == "cuda" else None,
        n_tiles=n_tiles(case_dir / "brainmask.nii.gz", patch, settings.segmentation.predict.tile_step_size),
        mirrorings=8 if settings.segmentation.predict.use_mirroring else 1,
    )
    return result


def n_tiles(brainmask: Path, patch, step: float) -> int:
    """Tiles nnU-Net's sliding window visits over the case cropped to its non-zero box."""
    import nibabel as nib
    import numpy as np

    brain = np.asarray(nib.load(str(brainmask)).dataobj) > 0
    inside = np.argwhere(brain)
    box = inside.max(0) - inside.min(0) + 1
    count = 1
    for size, side in zip(box, patch):
        size = max(int(size), int(side))
        count *= int(math.ceil((size - side) / (side * step))) + 1
    return count


def count_flops(build, shape, backward: bool) -> int:
    """FLOPs of a forward (and backward) of ``build()`` on a tensor of ``shape``, counted on fake tensors."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    with FakeTensorMode():
        model = build()
        x = torch.empty(shape, requires_grad=backward)  # a frozen net (F) still passes gradients to its input
        with FlopCounterMode(display=False) as counter:
            out = model(x)
            if backward:
                outs = out if isinstance(out, (list, tuple)) else [out]
                sum(o.float().mean() for o in outs).backward()
    return int(counter.get_total_flops())


def m_tfgan_step(work: Path, device: str) -> dict:
    """A TF-GAN step (benchmarks/tfgan_step.py's models and step), timed; FLOPs of 64³ and 128³ counted."""
    import torch

    torch.set_num_threads(2)
    sys.path.insert(0, str(REPO / "benchmarks"))
    import tfgan_step as ts
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    flops = {}
    for crop in (64, 128):
        batch = ts.make_batch(crop)
        mode = FakeTensorMode()
        with mode:
            G, D, F, _ = ts.build_models()
            opt_g, opt_d = ts.optimizers(G, D)
            fake = {key: mode.from_tensor(value) for key, value in batch.items()}
            with FlopCounterMode(display=False) as counter:
                ts.train_step(G, D, F, opt_g, opt_d, fake, "fp32", ts.SavedCounter(ts.storage_keys(G, D, F)),
                              real_losses=False)
        flops[crop] = int(counter.get_total_flops())
    crop = 128 if device == "cuda" else 64
    G, D, F, _ = ts.build_models()
    run_on = torch.device(device)
    G, D, F = G.to(run_on), D.to(run_on), F.to(run_on)
    opt_g, opt_d = ts.optimizers(G, D)
    batch = {k: v.to(run_on) for k, v in ts.make_batch(crop).items()}
    base_rss = _rss_mb()  # imports + models: what a GPU job's host holds besides its volumes
    ts.train_step(G, D, F, opt_g, opt_d, batch, "fp32", ts.SavedCounter(ts.storage_keys(G, D, F)))  # warm-up
    load = _load()
    start = time.perf_counter()
    ts.train_step(G, D, F, opt_g, opt_d, batch, "fp32", ts.SavedCounter(ts.storage_keys(G, D, F)))
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    # F alone: forward + backward through F at a batch of 2 (the intensity fit's SGD step), and F's forward
    # over a whole BraTS volume (the realism features)
    flops_fit = count_flops(lambda: ts.build_feature_extractor()[0], (2, 1, 128, 128, 128), backward=True)
    flops_f_volume = count_flops(lambda: ts.build_feature_extractor()[0], (1, 1, 240, 240, 155), backward=False)
    return {"crop": crop, "seconds": seconds, "load": load, "flops": flops, "rss_mb": _rss_mb(),
            "base_rss_mb": base_rss, "flops_fit": flops_fit, "flops_f_volume": flops_f_volume,
            "cuda_mb": torch.cuda.max_memory_allocated() / MB if device == "cuda" else None}


def m_features(work: Path, device: str) -> dict:
    """The realism job's work per volume: the case loaded, F over the whole volume (pooled per region)."""
    import torch

    torch.set_num_threads(2)
    sys.path.insert(0, str(REPO / "benchmarks"))
    import tfgan_step as ts

    from tumorfab.report.realism import case_features

    F = ts.build_feature_extractor()[0].eval().to(torch.device(device))

    class Extractor(torch.nn.Module):  # case_features calls extractor(image, brain)
        def __init__(self):
            super().__init__()
            self.f = F

        def forward(self, image, brain):
            return self.f(image)

    extractor = Extractor()
    case_dir = work / "preprocess" / "real" / CASE
    load = _load()
    start = time.perf_counter()
    from tumorfab.casefolder import load_case

    case = load_case(case_dir, MODALITIES)
    load_s = time.perf_counter() - start
    volume_mb = (case.stacked(MODALITIES).nbytes + case.seg.nbytes + case.brainmask.nbytes) / MB
    start = time.perf_counter()
    case_features(extractor, case_dir, MODALITIES, 3)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "load_s": load_s, "volume_mb": volume_mb, "rss_mb": _rss_mb(), "load": load,
            "f_fit_step_s": _f_fit_step(F, torch.device(device))}


def _f_fit_step(F, device) -> float:
    """Forward + backward through F on a batch of 2 cubes (64³ on the CPU, 128³ on a GPU), seconds."""
    import torch

    side = 128 if device.type == "cuda" else 64
    x = torch.randn(2, 1, side, side, side, device=device, requires_grad=True)
    start = time.perf_counter()
    sum(f.mean() for f in F(x)).backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def m_tfaug(work: Path, n_cases: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from tumorfab.synthesis.tfaug.generate import generate_tfaug
    from tumorfab.synthesis.tfaug.intensity_fit import FitResult, save_intensity

    save_intensity(FitResult(np.array([[0.6, 1.2, 1.4]], np.float32), np.array([[-0.5, 0.1, 0.3]], np.float32),
                             1.0, 0.5), MODALITIES, work / "intensity.json")
    settings = _settings()
    out = work / "tfaug"
    shutil.rmtree(out, ignore_errors=True)
    load = _load()
    seconds, cpu = _timed(
        generate_tfaug, [work / "preprocess" / "real" / CASE], [work / "preprocess" / "healthy" / HEAD],
        work / "intensity.json", out / "cases", out / "manifest.csv", n_cases, seed=SEED, modalities=MODALITIES,
        settings=settings.tfaug,
    )
    return {"seconds": seconds / n_cases, "cpu": cpu / n_cases, "rss_mb": _rss_mb(),
            "disk_mb": _size_mb(out / "cases") / n_cases, "load": load,
            "how": f"measured: generate_tfaug(), paper preset, {n_cases} cases, bank of 1 real case, 1 thread"}


def m_carvemix(work: Path, n_cases: int) -> dict:
    from tumorfab.synthesis.carvemix import generate_carvemix

    settings = _settings()
    case_dir = work / "preprocess" / "real" / CASE
    twin = work / "preprocess" / "real_twin" / "BraTS-GLI-00001-000"
    if not twin.exists():
        twin.parent.mkdir(parents=True, exist_ok=True)
        twin.symlink_to(case_dir)
    out = work / "carvemix"
    shutil.rmtree(out, ignore_errors=True)
    load = _load()
    seconds, cpu = _timed(generate_carvemix, {CASE: case_dir, twin.name: twin}, out / "cases",
                          out / "manifest.csv", n_cases, MODALITIES, settings.carvemix, SEED)
    return {"seconds": seconds / n_cases, "cpu": cpu / n_cases, "rss_mb": _rss_mb(),
            "disk_mb": _size_mb(out / "cases") / n_cases, "load": load,
            "how": f"measured: generate_carvemix(), {n_cases} cases from the real case and a copy of it"}


def m_evaluate(work: Path) -> dict:
    import nibabel as nib
    import numpy as np

    from tumorfab.segmentation.evaluate import evaluate_case

    seg = nib.load(str(work / "preprocess" / "real" / CASE / "seg.nii.gz"))
    shifted = np.roll(np.asarray(seg.dataobj), 2, axis=0)  # a prediction that differs from the reference
    prediction = work / "prediction.nii.gz"
    nib.save(nib.Nifti1Image(shifted.astype(np.uint8), seg.affine), str(prediction))
    load = _load()
    seconds, cpu = _timed(evaluate_case, work / "preprocess" / "real" / CASE / "seg.nii.gz", prediction)
    return {"seconds": seconds, "cpu": cpu, "rss_mb": _rss_mb(), "disk_mb": 0.0, "load": load,
            "how": "measured: evaluate_case() (Dice, HD95, lesion sensitivity) of a prediction shifted 2 voxels"}


def m_report(work: Path) -> dict:
    """The report jobs: their modules imported (most of a report job's time, as in the demo), and a mosaic."""
    load = _load()
    start = time.perf_counter()
    import tumorfab.report.figures  # noqa: F401
    import tumorfab.report.tables  # noqa: F401

    import_s, import_rss = time.perf_counter() - start, _rss_mb()
    from tumorfab.report.figures import plot_mosaic

    shown = len((work / "tfaug" / "manifest.csv").read_text().splitlines()) - 1
    start = time.perf_counter()
    plot_mosaic(cases_dir=work / "tfaug" / "cases", manifest_path=work / "tfaug" / "manifest.csv",
                out_png=work / "mosaic.png", modalities=MODALITIES, n_cases=shown, title="TF-Aug")
    per_case = (time.perf_counter() - start) / shown
    return {"import_s": import_s, "import_rss_mb": import_rss, "per_case_s": per_case, "rss_mb": _rss_mb(),
            "shown": shown, "mosaic_cases": _settings().report.mosaic_cases, "load": load,
            "disk_mb": _size_mb(work / "mosaic.png")}


def m_refine(work: Path) -> dict:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import fabricate_throughput as ft

    ft.write_models(work)
    (work / "preprocess").mkdir(exist_ok=True)
    load = _load()
    result = ft.run_refine(work, "tfaug", 1, 2)
    return {"seconds": result["seconds"], "rss_mb": result["rss"] * 1024**3 / MB, "load": load,
            "disk_mb": _size_mb(work / "tf" / "cases"), "how": f"measured: generate_tf(), 1 volume; {result['note']}"}


#: With --reuse: a step's result kept in the work folder (``<step>.json``) is read instead of measured again.
REUSE: Path | None = None


def in_own_process(function, *args):
    """``function(*args)`` in a fresh (spawned) process: its own peak RSS, its own CUDA context."""
    import json

    cached = REUSE / f"{function.__name__}.json" if REUSE else None
    if cached and cached.is_file():
        return json.loads(cached.read_text(), object_hook=lambda d: {int(k) if k.isdigit() else k: v
                                                                    for k, v in d.items()})
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        result = pool.submit(function, *args).result()
    if REUSE:
        REUSE.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(result))
    return result


# --- rows of the CSV -----------------------------------------------------------------------


@dataclass
class Cost:
    rule: str
    unit: str
    seconds: float
    peak_mb: float
    disk_mb: float
    device: str
    load: str
    how: str


FIELDS = ["rule", "unit", "seconds_per_unit", "peak_mb_per_unit", "disk_mb_per_unit", "device", "load_average",
          "how_measured"]


def write_csv(costs: list[Cost], path: Path = CSV_PATH) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(FIELDS)
        for c in costs:
            writer.writerow([c.rule, c.unit, f"{c.seconds:.4g}", f"{c.peak_mb:.0f}", f"{c.disk_mb:.4g}", c.device,
                             c.load, c.how])


def read_csv(path: Path = CSV_PATH) -> dict[str, Cost]:
    with open(path, newline="") as handle:
        return {
            row["rule"]: Cost(row["rule"], row["unit"], float(row["seconds_per_unit"]),
                              float(row["peak_mb_per_unit"]), float(row["disk_mb_per_unit"]), row["device"],
                              row["load_average"], row["how_measured"])
            for row in csv.DictReader(handle)
        }


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def measure(work: Path, measure_refine: bool, tfaug_cases: int) -> list[Cost]:
    # torch is asked in a child: the parent stays small, as a spawned child's peak RSS starts at its
    # parent's (Linux keeps the larger of the two across fork + exec)
    device = in_own_process(_device)
    gpu = device == "cuda"
    costs: list[Cost] = []
    gpu_label = "gpu" if gpu else "gpu (assumed)"

    def load_text(value: float) -> str:
        return f"{value:.2f}"

    def add(rule, unit, seconds, peak_mb, disk_mb, dev, load, how):
        costs.append(Cost(rule, unit, seconds, peak_mb, disk_mb, dev, load if isinstance(load, str)
                          else load_text(load), how))
        print(f"  {rule}: {seconds:.3g} s / {unit}, {peak_mb:.0f} MB ({how})", flush=True)

    print("per healthy head", flush=True)
    for rule, function in (("skullstrip_healthy", m_skullstrip), ("register_healthy", m_register),
                           ("normalize_healthy", m_normalize_healthy)):
        r = in_own_process(function, work)
        add(rule, "healthy head", r["seconds"], r["rss_mb"], r["disk_mb"], "cpu", r["load"], r["how"])
    print("per real case", flush=True)
    r = in_own_process(m_prepare, work)
    add("prepare", "BraTS case folder", r["seconds"], r["rss_mb"], r["disk_mb"], "cpu", r["load"], r["how"])
    r = in_own_process(m_normalize_real, work)
    add("normalize_real", "real case", r["seconds"], r["rss_mb"], r["disk_mb"], "cpu", r["load"], r["how"])

    nn = in_own_process(m_nnunet, work, device)
    image, plan, pre = nn["image"], nn["plan"], nn["preprocess"]
    add("nnunet_image_real", "real case", image["seconds"], image["rss_mb"], image["disk_mb"], "cpu",
        image["load"], image["how"])
    add("nnunet_images_synthetic", "synthetic case", image["seconds"], image["rss_mb"], image["disk_mb"],
        "cpu", image["load"], image["how"] + " (a synthetic case is the same conversion)")
    add("nnunet_plan", "real training case", plan["seconds"], nn["rss_mb_preprocess"], plan["disk_mb"], "cpu",
        plan["load"], plan["how"])
    add("nnunet_preprocess_real", "real training case", pre["seconds"], nn["rss_mb_preprocess"], pre["disk_mb"],
        "cpu", pre["load"], pre["how"])
    add("nnunet_preprocess_synthetic", "synthetic case", pre["seconds"], nn["rss_mb_preprocess"], pre["disk_mb"],
        "cpu", pre["load"], pre["how"] + " (a synthetic case is the same work)")

    patch = "x".join(map(str, nn["patch"]))
    if gpu:
        iteration_s = nn["step_s"]
        iteration_how = (f"measured on the GPU: one fwd+bwd+SGD step of the planned network, patch {patch}, "
                         f"batch {nn['batch']}, fp16 autocast (no data loading)")
    else:
        iteration_s = ASSUMED_GPU_NNUNET_ITERATION_S
        cpu_s = nn["step_s"] * nn["flops_train"] / nn["flops_small"]
        iteration_how = (f"ASSUMED {ASSUMED_GPU_NNUNET_ITERATION_S} s per iteration on an A100-class GPU (~150 s per "
                         f"250-iteration epoch), not measured; CPU: fwd+bwd at 64³ batch 2 {nn['step_s']:.1f} s, "
                         f"x FLOPs {nn['flops_train'] / nn['flops_small']:.1f} -> {cpu_s:.0f} s per iteration at "
                         f"patch {patch} batch {nn['batch']} on 2 threads")
    model_mb = nn["n_params"] * 4 * 3 / MB  # estimated: weights, momentum, a second checkpoint: ~3 x the weights
    # GPU rate: FLOPs per second one nnU-Net iteration achieves (measured or assumed)
    rate = nn["flops_train"] / iteration_s
    # an epoch = iterations_per_epoch training iterations + val_iterations_per_epoch forward-only ones
    val_fraction = nn["flops_fwd"] * nn["batch"] / nn["flops_train"]
    add("nnunet_train", "training iteration", iteration_s, ASSUMED_NNUNET_HOST_MB, model_mb, gpu_label,
        load_text(nn["step_load"]), iteration_how + f"; a validation iteration = {val_fraction:.2f} of it (FLOPs); "
        f"host memory ASSUMED {ASSUMED_NNUNET_HOST_MB} MB")
    predict_gpu_s = nn["n_tiles"] * nn["mirrorings"] * nn["flops_fwd"] / rate
    predict_host_s = pre["seconds"] + image["seconds"]  # nnU-Net's preprocessing of the case + export, about
    add("nnunet_predict", "predicted volume", predict_gpu_s + predict_host_s, ASSUMED_NNUNET_HOST_MB, 0.1,
        gpu_label, load_text(nn["step_load"]),
        f"{nn['n_tiles']} tiles x {nn['mirrorings']} mirrorings x forward FLOPs at nnU-Net's "
        f"{'measured' if gpu else 'ASSUMED'} GPU rate ({predict_gpu_s:.1f} s) + the case's preprocessing and "
        f"conversion on the CPU ({predict_host_s:.1f} s, measured); host memory ASSUMED {ASSUMED_NNUNET_HOST_MB} MB")

    r = in_own_process(m_evaluate, work)
    add("nnunet_evaluate", "predicted volume", r["seconds"], r["rss_mb"], r["disk_mb"], "cpu", r["load"], r["how"])

    print("synthesis", flush=True)
    r = in_own_process(m_tfaug, work, tfaug_cases)
    add("generate_tfaug", "TF-Aug case", r["seconds"], r["rss_mb"], r["disk_mb"], "cpu", r["load"], r["how"])
    tfaug_disk = r["disk_mb"]
    r = in_own_process(m_carvemix, work, 2)
    add("generate_carvemix", "CarveMix case", r["seconds"], r["rss_mb"], r["disk_mb"], "cpu", r["load"], r["how"])

    step = in_own_process(m_tfgan_step, work, device)
    feats = in_own_process(m_features, work, device)
    ratio = step["flops"][128] / step["flops"][64]
    if gpu:
        step_s, step_how = step["seconds"], "measured on the GPU: one 128³ step, batch 1, fp32"
    else:
        step_s = GPU_SLACK * step["flops"][128] / rate
        step_how = (f"ASSUMED: {step['flops'][128] / 1e12:.1f} TFLOP per 128³ step (counted) at nnU-Net's assumed "
                    f"GPU rate / {GPU_SLACK:g}; CPU: 64³ step {step['seconds']:.1f} s x FLOPs {ratio:.2f} = "
                    f"{step['seconds'] * ratio:.0f} s per 128³ step on 2 threads (tfgan_step.py timed "
                    f"{README_TFGAN_128_CPU_S:.0f} s)")
    volume_mb = feats["volume_mb"]
    n_volumes_note = "host: the process + every coarse pair and real training case in memory (see the projection)"
    add("train_tfgan", "training step", step_s, step["base_rss_mb"], 0.0, gpu_label, load_text(step["load"]),
        step_how + f"; {n_volumes_note}, {volume_mb:.0f} MB a volume (measured)")
    add("train_pix2pix", "training step", step_s, step["base_rss_mb"], 0.0, gpu_label, load_text(step["load"]),
        "ASSUMED: a TF-GAN step (same G widths and crop; no F): an upper bound; host as TF-GAN's, real cases only")

    if measure_refine:
        refine = in_own_process(m_refine, work)
    else:
        refine = {**README_REFINE, "disk_mb": tfaug_disk}
    if gpu and measure_refine:
        refine_s, refine_how = refine["seconds"], refine["how"]
    else:
        windows = 8  # 128³ windows at overlap 0.5 over the brain box (fabricate_throughput.py)
        g_flops = step["flops"][128] / 6.0  # G's forward is about 1/6 of a GAN step (3 x G + D + F fwd/bwd)
        refine_s = GPU_SLACK * windows * g_flops / rate + 2 * feats["load_s"]
        refine_how = (f"ASSUMED on a GPU: {windows} windows x G's forward (~1/6 of a step's FLOPs) at the assumed "
                      f"rate / {GPU_SLACK:g} + load and save ({2 * feats['load_s']:.1f} s, measured); CPU "
                      f"{refine['seconds']:.0f} s per volume ({refine['how']}, load {refine['load']})")
    add("generate_tf", "refined volume", refine_s, refine["rss_mb"], refine["disk_mb"], gpu_label,
        str(refine["load"]), refine_how)
    add("generate_pix2pix", "generated volume", refine_s, refine["rss_mb"], refine["disk_mb"], gpu_label,
        str(refine["load"]), "ASSUMED: as a TF-GAN refinement (same G widths, window, overlap)")

    if gpu:
        fit_s = feats["f_fit_step_s"]
        fit_how = "measured on the GPU: F fwd+bwd on 2 x 128³"
    else:
        fit_s = GPU_SLACK * step["flops_fit"] / rate
        fit_how = (f"ASSUMED: F fwd+bwd on 2 x 128³ ({step['flops_fit'] / 1e12:.2f} TFLOP, counted) at the assumed "
                   f"rate / {GPU_SLACK:g}; CPU at 64³ {feats['f_fit_step_s']:.1f} s (x8 at 128³)")
    add("fit_tfaug_intensity", "SGD step", fit_s + feats["load_s"] / 2, step["base_rss_mb"] + volume_mb, 0.0,
        gpu_label, load_text(feats["load"]), fit_how + f" + half a case load per step ({feats['load_s']:.1f} s "
        f"a case, measured; the pool loads one head per pair once: an over-estimate)")
    if gpu:
        realism_s, realism_how = feats["seconds"], "measured on the GPU: case_features() (load + F over the volume)"
    else:
        f_s = GPU_SLACK * step["flops_f_volume"] / rate
        realism_s = f_s + feats["load_s"]
        realism_how = (f"ASSUMED: F over the whole volume ({step['flops_f_volume'] / 1e12:.2f} TFLOP, counted) at the "
                       f"assumed rate / {GPU_SLACK:g} + the case loaded ({feats['load_s']:.1f} s, measured); CPU: "
                       f"case_features() {feats['seconds']:.1f} s")
    add("report_realism", "volume", realism_s, feats["rss_mb"], 0.0, gpu_label, load_text(feats["load"]),
        realism_how)

    r = in_own_process(m_report, work)
    mosaic_s = r["import_s"] + r["per_case_s"] * r["mosaic_cases"]
    add("mosaic_synthetic", "mosaic", mosaic_s, r["rss_mb"] + volume_mb * r["mosaic_cases"], r["disk_mb"], "cpu",
        r["load"], f"measured: imports {r['import_s']:.1f} s + plot_mosaic() {r['per_case_s']:.2f} s a case "
        f"({r['shown']} cases) x {r['mosaic_cases']} cases; memory + {r['mosaic_cases']} volumes")
    for rule in ("report_collect", "report_tables", "report_dice_vs_synthetic"):
        add(rule, "job", r["import_s"] + ASSUMED_TABLE_S, r["import_rss_mb"] + ASSUMED_TABLE_MB, 0.01, "cpu",
            r["load"], f"measured: the report modules' imports {r['import_s']:.1f} s, {r['import_rss_mb']:.0f} MB; "
            f"ASSUMED + {ASSUMED_TABLE_S:g} s and {ASSUMED_TABLE_MB:g} MB for the CSVs of the study "
            f"(24 runs x 200 cases)")
    return costs


# --- the study's projection ----------------------------------------------------------------


@dataclass
class Work:
    rule: str
    units_per_job: float
    jobs: int
    threads: int
    gpu: bool
    note: str = ""
    #: host memory of a job beyond the per-unit peak (MB): volumes a job holds at once
    extra_mb: float = 0.0


def study_work(config: dict, n_heads: int = N_HEADS, volume_mb: float = 0.0) -> list[Work]:
    """Units of work per job and jobs per rule of the study in ``config`` (schema defaults filled in)."""
    from tumorfab.synthesis import generation_size

    experiments = config["experiments"]
    seeds = len(config["segmentation"]["seeds"])
    n_train, n_val = config["split"]["n_real_train"], config["split"]["n_val"]
    train = config["segmentation"]["train"]
    seg_threads = config["segmentation"]["threads"]
    tfgan, pix2pix = config["tfgan"], config["pix2pix"]
    fit = config["tfaug"]["intensity_fit"]
    size = {s: generation_size(experiments, s) for s in ("tfaug", "tf", "pix2pix", "carvemix")}
    sources = [s for s in size if size[s] > 0]
    iterations = train["epochs"] * train["iterations_per_epoch"]
    val_iterations = train["epochs"] * train["val_iterations_per_epoch"]
    tfgan_steps = tfgan["epochs"] * math.ceil(size["tfaug"] / tfgan["batch_size"])
    pix_epochs = pix2pix["epochs"] or tfgan["epochs"]
    pix_steps = pix_epochs * math.ceil(n_train / pix2pix["batch_size"])
    fit_steps = fit["epochs"] * math.ceil(fit["n_pairs"] / fit["batch_size"])
    n_experiments = len(experiments)
    realism_volumes = n_train + n_val + sum(size[s] for s in sources)
    return [
        Work("prepare", N_BRATS_FOLDERS, 1, 1, False, f"{N_BRATS_FOLDERS} BraTS case folders"),
        Work("skullstrip_healthy", 1, n_heads, 1, False, f"{n_heads} heads"),
        Work("register_healthy", 1, n_heads, 1, False, f"{n_heads} heads"),
        Work("normalize_healthy", 1, n_heads, 1, False, f"{n_heads} heads"),
        Work("normalize_real", 1, n_train + n_val, 1, False, f"{n_train} + {n_val} cases"),
        Work("nnunet_image_real", 1, n_train + n_val, 1, False, f"{n_train} + {n_val} cases"),
        Work("nnunet_plan", n_train, 1, seg_threads, False, f"{n_train} training cases"),
        Work("nnunet_preprocess_real", n_train, 1, 1, False, f"{n_train} training cases"),
        Work("fit_tfaug_intensity", fit_steps, 1, 1, True,
             f"{fit['epochs']} epochs x {fit['n_pairs']} pairs / {fit['batch_size']}"),
        Work("generate_tfaug", size["tfaug"], 1, 1, False, f"{size['tfaug']} cases"),
        Work("train_tfgan", tfgan_steps, 1, tfgan["threads"], True,
             f"{tfgan['epochs']} epochs x {size['tfaug']} pairs / {tfgan['batch_size']}",
             extra_mb=(size["tfaug"] + n_train) * volume_mb),
        Work("generate_tf", size["tf"], 1, tfgan["threads"], True, f"{size['tf']} volumes"),
        Work("train_pix2pix", pix_steps, 1, pix2pix["threads"], True,
             f"{pix_epochs} epochs x {n_train} cases / {pix2pix['batch_size']}", extra_mb=n_train * volume_mb),
        Work("generate_pix2pix", size["pix2pix"], 1, pix2pix["threads"], True, f"{size['pix2pix']} volumes"),
        Work("generate_carvemix", size["carvemix"], 1, 1, False, f"{size['carvemix']} cases"),
        Work("nnunet_images_synthetic", max(size[s] for s in sources), len(sources), 1, False,
             f"up to {max(size[s] for s in sources)} cases per source, {len(sources)} sources"),
        Work("nnunet_preprocess_synthetic", max(size[s] for s in sources), len(sources), 1, False,
             f"up to {max(size[s] for s in sources)} cases per source, {len(sources)} sources"),
        # an epoch: iterations_per_epoch training + val_iterations_per_epoch validation iterations; the
        # validation iterations are counted as training ones (an upper bound: forward only)
        Work("nnunet_train", iterations + val_iterations, n_experiments * seeds, seg_threads, True,
             f"{train['epochs']} epochs x ({train['iterations_per_epoch']} + {train['val_iterations_per_epoch']}) "
             f"iterations; {n_experiments} experiments x {seeds} seeds"),
        Work("nnunet_predict", seeds * n_val, n_experiments, seg_threads, True,
             f"{seeds} seeds x {n_val} held-out cases; {n_experiments} experiments"),
        Work("nnunet_evaluate", seeds * n_val, n_experiments, 1, False,
             f"{seeds} seeds x {n_val} cases; {n_experiments} experiments"),
        Work("mosaic_synthetic", 1, len(sources), 1, False, f"one mosaic per source, {len(sources)} sources"),
        Work("report_collect", 1, 1, 1, False, "one job"),
        Work("report_tables", 1, len(config["tables"]), 1, False, f"one job per table, {len(config['tables'])}"),
        Work("report_dice_vs_synthetic", 1, 1, 1, False, "one job"),
        Work("report_realism", realism_volumes, 1, 1, True,
             f"{n_train} + {n_val} real + {' + '.join(str(size[s]) for s in sources)} synthetic volumes"),
    ]


def projection_rows(costs: dict[str, Cost], config: dict, n_heads: int, volume_mb: float) -> list[dict]:
    rows = []
    for w in study_work(config, n_heads, volume_mb):
        c = costs[w.rule]
        job_s = c.seconds * w.units_per_job
        job_mb = c.peak_mb + w.extra_mb
        hours = job_s * w.jobs / 3600
        disk = c.disk_mb * w.units_per_job * w.jobs
        if w.rule == "nnunet_train":
            disk = c.disk_mb * w.jobs  # one model per training job
        rows.append({
            "rule": w.rule, "jobs": w.jobs, "units": w.note, "per_unit_s": c.seconds, "device": c.device,
            "job_min": job_s / 60, "cpu_h": 0.0 if w.gpu else hours * w.threads, "gpu_h": hours if w.gpu else 0.0,
            "job_mb": job_mb, "disk_gb": disk / 1000, "need_runtime": math.ceil(job_s * RUNTIME_MARGIN / 60),
            "need_mem_mb": math.ceil(job_mb * MEM_MARGIN), "how": c.how,
        })
    return rows


def volume_mb_from(costs: dict[str, Cost]) -> float:
    """MB a case holds in memory as a GAN's Volume (image float32, labels, brain), from the train_tfgan row."""
    how = costs["train_tfgan"].how
    marker = " MB a volume"
    end = how.index(marker)
    return float(how[:end].rsplit(" ", 1)[-1])


def markdown(rows: list[dict], declared: dict[str, tuple[int, int]] | None = None) -> str:
    head = ["rule", "jobs", "units per job", "s / unit", "device", "min / job", "CPU-h", "GPU-h", "peak MB / job",
            "disk GB", f"runtime needed (x{RUNTIME_MARGIN:g})", f"mem_mb needed (x{MEM_MARGIN:g})"]
    if declared:
        head += ["declared runtime", "declared mem_mb"]
    lines = ["| " + " | ".join(head) + " |", "| --- | ---: | --- | ---: | --- |" + " ---: |" * (len(head) - 5)]

    def fmt(value: float, digits: int = 1) -> str:
        return f"{value:,.{digits}f}" if value else "–"

    for r in rows:
        cells = [f"`{r['rule']}`", str(r["jobs"]), r["units"], f"{r['per_unit_s']:.3g}", r["device"],
                 f"{r['job_min']:,.1f}", fmt(r["cpu_h"]), fmt(r["gpu_h"]), f"{r['job_mb']:,.0f}",
                 fmt(r["disk_gb"]), str(r["need_runtime"]), str(r["need_mem_mb"])]
        if declared:
            runtime, mem = declared.get(r["rule"], ("?", "?"))
            cells += [str(runtime), str(mem)]
        lines.append("| " + " | ".join(cells) + " |")
    total = ["**total**", str(sum(r["jobs"] for r in rows)), "", "", "", "", f"**{sum(r['cpu_h'] for r in rows):,.1f}**",
             f"**{sum(r['gpu_h'] for r in rows):,.1f}**", f"**{max(r['job_mb'] for r in rows):,.0f}** (largest)",
             f"**{sum(r['disk_gb'] for r in rows):,.1f}**", "", ""]
    if declared:
        total += ["", ""]
    lines.append("| " + " | ".join(total) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, default=N_HEADS, help=f"healthy heads of the study (default {N_HEADS})")
    parser.add_argument("--tfaug-cases", type=int, default=3, help="TF-Aug cases timed (default 3)")
    parser.add_argument("--measure-refine", action="store_true",
                        help="time a refinement (~2.5-5 min on 2 CPU cores) instead of reading the README's figure")
    parser.add_argument("--project-only", action="store_true", help="no measuring: project from the CSV")
    parser.add_argument("--csv", type=Path, default=CSV_PATH)
    parser.add_argument("--work-dir", type=Path, help="keep the work folder here (default: temporary)")
    parser.add_argument("--reuse", action="store_true",
                        help="with --work-dir: keep each step's result there and reuse it (resume a broken run)")
    args = parser.parse_args()
    global REUSE
    if args.reuse and args.work_dir:
        REUSE = args.work_dir.resolve() / "results"
    if not args.project_only:
        if not REAL.is_dir():
            sys.exit(f"{REAL} is not there: the real scans are needed (see its README.md)")
        one, five, fifteen = os.getloadavg()
        print(f"load average at start: {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} CPUs", flush=True)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="study_cost_") as temporary:
            work = (args.work_dir or Path(temporary)).resolve()
            work.mkdir(parents=True, exist_ok=True)
            costs = measure(work, args.measure_refine, args.tfaug_cases)
        write_csv(costs, args.csv)
        one, five, fifteen = os.getloadavg()
        print(f"load average at end: {one:.2f} / {five:.2f} / {fifteen:.2f}; measured in "
              f"{time.perf_counter() - start:.0f} s; wrote {args.csv}", flush=True)
    from tumorfab.config import study_config  # after measuring: the parent stays small (see measure)

    config = study_config(REPO)
    costs = read_csv(args.csv)
    rows = projection_rows(costs, config, args.heads, volume_mb_from(costs))
    print()
    print(markdown(rows))
    print(f"\nMargins: runtime x{RUNTIME_MARGIN:g}, memory x{MEM_MARGIN:g} over a job's projection.")


if __name__ == "__main__":
    main()
