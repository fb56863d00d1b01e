"""The ``fabricate`` section: named cohorts, each built by :meth:`Cohort.from_config`.

A cohort's keys sit under a name of the user's, where the config schema can
set no defaults, so they are filled here (the schema's description says so):
``seed`` null is the study's seed; ``controls`` and ``mass_effect`` are the
study's ``tfaug`` sections with the keys the cohort gives replaced (``offset``
and ``heterogeneity`` key by key); ``export`` is prefix ``SYN``, nnU-Net
dataset id 900 + the cohort's rank in name order, no real cases merged.

What can be checked without the data is checked here, each error naming the
cohort and its key, before the DAG is built: controls that the source does
not read (CarveMix mixes real cases and draws no lesion), lesion controls
beside the user's own masks, a lesion larger than a brain or more lesions
than fit in one (a brain's volume: the upper end of
``skullstrip.brain_volume_ml``), a mask folder without masks, two cohorts with
one nnU-Net dataset id. :func:`check_against_reference` adds what needs the
reference case's brain (a location outside it, a mask on another grid).
Imports nothing heavy: the workflow builds these while it builds the DAG.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from tumorfab.config import Settings
from tumorfab.synthesis.tfaug.settings import Controls, MassEffect, TFAugSettings

SOURCES = ("tf", "tfaug", "carvemix", "pix2pix")
#: Sources whose lesions TF-Aug draws (TF refines them, Pix2Pix paints their label maps).
LESION_SOURCES = ("tf", "tfaug", "pix2pix")
#: Controls that place lesions: the user's own masks replace them.
PLACEMENT_CONTROLS = ("location", "size_ml", "n_lesions")
#: Controls merged key by key into the study's.
NESTED_CONTROLS = ("offset", "heterogeneity")
DEFAULT_BRATS_PREFIX = "SYN"
DEFAULT_FIRST_DATASET_ID = 900
MASK_SUFFIX = ".nii.gz"


@dataclass(frozen=True)
class CohortExport(Settings):
    """``fabricate.cohorts.<name>.export``."""

    brats_prefix: str
    nnunet_dataset_id: int
    merge_real: bool


@dataclass(frozen=True)
class Cohort(Settings):
    """One cohort. ``tfaug`` is the study's TF-Aug settings with the cohort's
    controls and mass effect (None for CarveMix); ``masks`` the user's label
    maps in name order (empty: TF-Aug places lesions); ``config`` the cohort's
    section as given, as JSON (for its card)."""

    name: str
    source: str
    n_cases: int
    seed: int
    tfaug: TFAugSettings | None
    masks: tuple[str, ...]
    export: CohortExport
    config: str

    @property
    def key(self) -> str:
        return f"fabricate.cohorts.{self.name}"

    @classmethod
    def from_config(
        cls,
        name: str,
        section: Mapping,
        study_tfaug: Mapping,
        study_seed: int,
        rank: int,
        brain_volume_ml: float,
    ) -> Cohort:
        key = f"fabricate.cohorts.{name}"
        source = section["source"]
        if source not in SOURCES:
            raise ValueError(f"{key}.source {source!r}: one of {list(SOURCES)}")
        n_cases = int(section["n_cases"])
        if n_cases < 1:
            raise ValueError(f"{key}.n_cases must be >= 1, got {n_cases}")
        controls = dict(section.get("controls") or {})
        mass_effect = dict(section.get("mass_effect") or {})
        masks_dir = section.get("masks_dir")
        if source not in LESION_SOURCES:
            given = [k for k in ("controls", "mass_effect", "masks_dir") if section.get(k)]
            if given:
                raise ValueError(
                    f"{key}: source {source} mixes real cases and draws no lesion; {given} do not apply to it"
                )
        masks: tuple[str, ...] = ()
        if masks_dir:
            placing = [k for k in PLACEMENT_CONTROLS if k in controls]
            if placing:
                raise ValueError(
                    f"{key}.controls {placing}: the lesions come from masks_dir, placed as given; "
                    "location, size_ml and n_lesions do not apply"
                )
            masks = _mask_files(Path(masks_dir), f"{key}.masks_dir")
        tfaug = None
        if source in LESION_SOURCES:
            merged = _merged_controls(study_tfaug["controls"], controls)
            merged_mass_effect = {**study_tfaug["mass_effect"], **mass_effect}
            try:
                tfaug = dataclasses.replace(
                    TFAugSettings.from_config(study_tfaug),
                    controls=Controls.from_config(merged),
                    mass_effect=MassEffect.from_config(merged_mass_effect),
                )
            except ValueError as error:
                raise ValueError(str(error).replace("tfaug.", f"{key}.")) from None
            if not masks:
                _check_fits(tfaug.controls, brain_volume_ml, key)
        export = dict(section.get("export") or {})
        return cls(
            name=name,
            source=source,
            n_cases=n_cases,
            seed=int(study_seed if section.get("seed") is None else section["seed"]),
            tfaug=tfaug,
            masks=masks,
            export=CohortExport(
                brats_prefix=str(export.get("brats_prefix", DEFAULT_BRATS_PREFIX)),
                nnunet_dataset_id=int(export.get("nnunet_dataset_id", DEFAULT_FIRST_DATASET_ID + rank)),
                merge_real=bool(export.get("merge_real", False)),
            ),
            config=json.dumps(dict(section), sort_keys=True),
        )

    def requested(self) -> dict:
        """The cohort's section as the user gave it."""
        return json.loads(self.config)

    def controls_checked(self) -> dict:
        """The lesion controls every case must meet (``tfaug.controls`` keys; the
        card checks them): none for CarveMix and for the user's own masks."""
        if self.tfaug is None or self.masks:
            return {}
        controls = self.tfaug.controls
        return {
            "location": controls.location.record(),
            "size_ml": list(controls.size_ml) if controls.size_ml else None,
            "n_lesions": list(controls.n_lesions),
        }


def cohorts_from_config(config: Mapping) -> dict[str, Cohort]:
    """Every cohort of ``fabricate.cohorts`` (validated config), in name order."""
    sections = dict(config.get("fabricate", {}).get("cohorts", {}))
    brain_volume_ml = float(config["skullstrip"]["brain_volume_ml"][1])
    cohorts = {
        name: Cohort.from_config(name, sections[name], config["tfaug"], int(config["seed"]), rank, brain_volume_ml)
        for rank, name in enumerate(sorted(sections))
    }
    by_id: dict[int, list[str]] = {}
    for cohort in cohorts.values():
        by_id.setdefault(cohort.export.nnunet_dataset_id, []).append(cohort.name)
    shared = {i: names for i, names in by_id.items() if len(names) > 1}
    if shared:
        raise ValueError(
            "fabricate.cohorts: cohorts share an nnU-Net dataset id (export.nnunet_dataset_id): "
            + "; ".join(f"{i}: {names}" for i, names in sorted(shared.items()))
        )
    return cohorts


def _merged_controls(study: Mapping, cohort: Mapping) -> dict:
    merged = {**study, **cohort}
    for key in NESTED_CONTROLS:
        if key in cohort:
            merged[key] = {**study[key], **cohort[key]}
    return merged


def _check_fits(controls: Controls, brain_volume_ml: float, key: str) -> None:
    """A lesion larger than a brain, or more lesions than fit in one, can never be placed."""
    if controls.size_ml is None:
        return
    smallest = controls.size_ml[0]
    if smallest >= brain_volume_ml:
        raise ValueError(
            f"{key}.controls.size_ml {list(controls.size_ml)}: a lesion of {smallest:g} ml or more does not fit "
            f"in a brain (at most {brain_volume_ml:g} ml, skullstrip.brain_volume_ml)"
        )
    fewest = controls.n_lesions[0]
    if fewest * smallest >= brain_volume_ml:
        raise ValueError(
            f"{key}.controls: n_lesions {list(controls.n_lesions)} of size_ml {list(controls.size_ml)}: "
            f"{fewest} lesions of {smallest:g} ml or more do not fit in a brain "
            f"(at most {brain_volume_ml:g} ml, skullstrip.brain_volume_ml)"
        )


def _mask_files(folder: Path, key: str) -> tuple[str, ...]:
    if not folder.is_dir():
        raise ValueError(f"{key}: {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.name.endswith(MASK_SUFFIX) and not p.name.startswith("."))
    if not files:
        raise ValueError(f"{key}: {folder} holds no label map (*{MASK_SUFFIX})")
    return tuple(str(p) for p in files)


def reference_brain(images: Mapping[str, str | Path]):
    """The reference case's brain (bool, as a real case's is found:
    ``normalize.brainmask_from_stripped``), its affine and its shape, from its
    raw images (channel -> file)."""
    import nibabel as nib
    import numpy as np

    from tumorfab.preprocess.normalize import brainmask_from_stripped

    loaded = [nib.load(str(path)) for path in images.values()]
    brain = brainmask_from_stripped([np.asarray(image.dataobj) for image in loaded]).astype(bool)
    return brain, loaded[0].affine, brain.shape


def check_against_reference(
    cohorts: Sequence[Cohort], brain, affine, shape: Sequence[int], spacing_tolerance_mm: float = 1e-3
) -> None:
    """What needs the reference case: a ``coordinates`` location whose centre
    lies outside its brain (``brain``, bool on the reference grid; an
    ``affine`` voxel -> world mm), the user's masks on another grid than
    ``shape``/``affine``. Raises ``ValueError`` naming the cohort and key."""
    import nibabel as nib
    import numpy as np

    inverse = np.linalg.inv(affine)
    for cohort in cohorts:
        location = cohort.tfaug.controls.location if cohort.tfaug is not None else None
        if location is not None and location.mode == "coordinates" and not cohort.masks:
            index = np.rint(inverse[:3, :3] @ np.asarray(location.center_mm) + inverse[:3, 3]).astype(int)
            inside = bool(np.all(index >= 0) and np.all(index < np.asarray(shape)) and brain[tuple(index)])
            if not inside:
                raise ValueError(
                    f"{cohort.key}.controls.location.center_mm {list(location.center_mm)}: outside the "
                    "reference case's brain (world RAS mm of the reference grid)"
                )
        for mask in cohort.masks:
            header = nib.load(mask)
            if tuple(header.shape) != tuple(shape) or not np.allclose(header.affine, affine, atol=spacing_tolerance_mm):
                raise ValueError(
                    f"{cohort.key}.masks_dir: {mask} is on another grid ({tuple(header.shape)}) than the "
                    f"reference case ({tuple(shape)}, same affine needed): the masks are placed as given"
                )
