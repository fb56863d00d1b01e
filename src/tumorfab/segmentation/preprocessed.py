"""Each case nnU-Net-preprocessed once, and every experiment's preprocessed dataset.

With the shared plan (``tumorfab.segmentation.plans``) and z-score
normalization per image, a case's preprocessed files depend only on the case
and the plan: the real training cases (:func:`preprocess_real`) and every case
of a synthetic source (:func:`preprocess_synthetic`) are preprocessed once, and
an experiment's preprocessed dataset (:func:`build_preprocessed_dataset`, what
training reads) links its training set into one folder: the real training
cases, then the first ``n_synthetic`` cases of its source's manifest
(``tumorfab.synthesis.manifest.training_cases``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Sequence

from tumorfab.io import atomic_directory
from tumorfab.segmentation.dataset import NnunetCase, _link, dataset_json, dataset_name, nnunet_cases
from tumorfab.segmentation.plans import BASE_CONFIGURATION, PLANS_NAME, data_identifier, plans_for_dataset
from tumorfab.synthesis.manifest import manifest_case_ids, training_cases


def preprocess_cases(
    plans_file: str | os.PathLike,
    modalities: Sequence[str],
    cases: Sequence[NnunetCase],
    out_dir: str | os.PathLike,
    configuration: str = BASE_CONFIGURATION,
) -> None:
    """nnU-Net-preprocess each case (with labels) once into ``out_dir``.

    Writes nnU-Net's ``{case}.b2nd``, ``{case}_seg.b2nd`` and ``{case}.pkl``
    (DefaultPreprocessor.run_case_save, run sequentially: no worker pool).
    The folder is built under a temporary name and renamed when complete.
    """
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = json.loads(Path(plans_file).read_text())
    manager = PlansManager(plans)
    config = manager.get_configuration(configuration)
    ds_json = dataset_json(modalities, len(cases))
    with atomic_directory(out_dir) as tmp:
        preprocessor = config.preprocessor_class(verbose=False)
        for case in cases:
            images = [str(case.image_dir / f"{m}.nii.gz") for m in modalities]
            preprocessor.run_case_save(
                str(tmp / case.case_id), images, str(case.seg), manager, config, ds_json
            )
            print(f"preprocessed {case.case_id}")


def preprocess_real(
    plans_file: str | os.PathLike,
    modalities: Sequence[str],
    case_ids: Sequence[str],
    image_root: str | os.PathLike,
    case_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    configuration: str = BASE_CONFIGURATION,
) -> None:
    """Preprocess the real training cases once (images ``image_root/{case}``,
    labels ``case_root/{case}/seg.nii.gz``) into ``out_dir``."""
    preprocess_cases(plans_file, modalities, nnunet_cases(case_ids, image_root, case_root), out_dir, configuration)


def preprocess_synthetic(
    plans_file: str | os.PathLike,
    modalities: Sequence[str],
    manifest: str | os.PathLike,
    image_root: str | os.PathLike,
    cases_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    configuration: str = BASE_CONFIGURATION,
) -> None:
    """Preprocess every case of a synthetic source once (all experiments link prefixes)."""
    cases = nnunet_cases(manifest_case_ids(manifest), image_root, cases_root)
    preprocess_cases(plans_file, modalities, cases, out_dir, configuration)


def build_preprocessed_dataset(
    out_root: str | os.PathLike,
    experiment: str,
    plans_file: str | os.PathLike,
    fingerprint_file: str | os.PathLike,
    modalities: Sequence[str],
    train_cases: Sequence[str],
    real_preprocessed: str | os.PathLike,
    n_synthetic: int = 0,
    synthetic_manifest: str | os.PathLike | None = None,
    synthetic_preprocessed: str | os.PathLike | None = None,
    configuration: str = BASE_CONFIGURATION,
) -> Path:
    """An experiment's nnU-Net preprocessed folder, assembled from links.

    ``out_root`` plays ``nnUNet_preprocessed``; inside it
    ``Dataset001_{experiment}`` gets the shared plan (renamed), dataset.json,
    the baseline fingerprint and the data folder with links to the
    preprocessed files of the experiment's training set: the real
    ``train_cases`` (in ``real_preprocessed``), then the first ``n_synthetic``
    cases of ``synthetic_manifest`` (in ``synthetic_preprocessed``), as
    written by :func:`preprocess_cases`. Built whole, then renamed. Returns
    the dataset folder.
    """
    if n_synthetic and synthetic_preprocessed is None:
        raise ValueError("n_synthetic > 0 needs the source's manifest and preprocessed folder")
    real = set(train_cases)
    case_folders = {
        c: Path(real_preprocessed if c in real else synthetic_preprocessed)
        for c in training_cases(train_cases, synthetic_manifest, n_synthetic)
    }
    plans = plans_for_dataset(json.loads(Path(plans_file).read_text()), experiment)
    identifier = data_identifier(plans, configuration)
    with atomic_directory(out_root) as tmp:
        folder = tmp / dataset_name(experiment)
        folder.mkdir(parents=True)
        (folder / f"{PLANS_NAME}.json").write_text(json.dumps(plans, indent=2, sort_keys=False))
        (folder / "dataset.json").write_text(json.dumps(dataset_json(modalities, len(case_folders)), indent=2))
        shutil.copyfile(fingerprint_file, folder / "dataset_fingerprint.json")
        for case_id, source in case_folders.items():
            for suffix in (".b2nd", "_seg.b2nd", ".pkl"):
                target = source / f"{case_id}{suffix}"
                if not target.exists():
                    raise FileNotFoundError(f"{target}: preprocessed file missing for case {case_id}")
                _link(target, folder / identifier / f"{case_id}{suffix}")
    return Path(out_root) / dataset_name(experiment)
