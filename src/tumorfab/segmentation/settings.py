"""The nnU-Net stage's settings (config section ``segmentation``): plan, train, predict.

Built once from the validated config by :meth:`SegmentationSettings.from_config`,
which checks what the schema cannot; the stage's functions take these objects.
Values stay as the schema typed them (lists become tuples), so a training's
key file (:mod:`tumorfab.segmentation.train`) records them as before.

Threads and memory are the jobs' resources, not settings. Light to import:
the workflow builds these objects while it reads the DAG.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from typing import Any, Mapping

from tumorfab.config import Settings, config_section, without_resources

#: nnU-Net's planned configuration, and ours when the plan has an override
#: (:mod:`tumorfab.segmentation.plans`).
BASE_CONFIGURATION = "3d_fullres"
CUSTOM_CONFIGURATION = "3d_fullres_tumorfab"


def _names(settings_class) -> list[str]:
    return [field.name for field in fields(settings_class)]


@dataclass(frozen=True)
class PlanSettings(Settings):
    """Overrides of nnU-Net's planned 3d_fullres (``segmentation.plan``); None: as planned.

    Every field is an override: any one set adds configuration
    ``3d_fullres_tumorfab`` (:attr:`configuration`).
    """

    patch_size: tuple[int, ...] | None
    base_features: int | None
    max_features: int | None
    batch_size: int | None
    n_conv_per_stage: int | None

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> PlanSettings:
        """From the validated ``segmentation.plan``; a ``ValueError`` names the key it refuses."""
        section = config_section(section, _names(cls), "segmentation.plan")
        base, cap = section["base_features"], section["max_features"]
        if base is not None and cap is not None and cap < base:
            raise ValueError(
                f"segmentation.plan.max_features: {cap} is below base_features {base} "
                "(every stage would have max_features features)"
            )
        patch_size = section["patch_size"]
        return cls(**{**section, "patch_size": None if patch_size is None else tuple(patch_size)})

    @property
    def configuration(self) -> str:
        """The configuration trained: 3d_fullres, or 3d_fullres_tumorfab when any override is set."""
        return BASE_CONFIGURATION if all(value is None for value in astuple(self)) else CUSTOM_CONFIGURATION


@dataclass(frozen=True)
class TrainSettings(Settings):
    """One training's settings besides its seed (``segmentation.train``)."""

    epochs: int
    iterations_per_epoch: int
    val_iterations_per_epoch: int
    checkpoint_every: int
    #: auto, cpu or cuda (:func:`tumorfab.device.resolve_device`)
    device: str
    #: nnUNet_n_proc_DA; None: 0 on the CPU, one per thread on a GPU
    data_augmentation_workers: int | None
    #: nnU-Net's SGD's initial learning rate; None: nnU-Net's
    initial_lr: float | None

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> TrainSettings:
        """From the validated ``segmentation.train`` (every key present)."""
        return cls(**config_section(section, _names(cls), "segmentation.train"))


@dataclass(frozen=True)
class PredictSettings(Settings):
    """How the held-out cases are predicted (``segmentation.predict``)."""

    tile_step_size: float
    use_mirroring: bool
    #: the training's ``segmentation.train.device``: prediction runs where training ran
    device: str

    @classmethod
    def from_config(cls, section: Mapping[str, Any], device: str) -> PredictSettings:
        """From the validated ``segmentation.predict`` and the training's device."""
        section = config_section(section, ("tile_step_size", "use_mirroring"), "segmentation.predict")
        return cls(**section, device=device)


@dataclass(frozen=True)
class SegmentationSettings(Settings):
    """The ``segmentation`` section: the seeds, and the plan, train and predict settings."""

    seeds: tuple[int, ...]
    plan: PlanSettings
    train: TrainSettings
    predict: PredictSettings

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> SegmentationSettings:
        """From the validated config's ``segmentation`` (its resources ignored); a
        ``ValueError`` names the key it refuses."""
        settings = without_resources(section)
        settings = config_section(settings, _names(cls), "segmentation")
        train = TrainSettings.from_config(settings["train"])
        return cls(
            seeds=tuple(settings["seeds"]),
            plan=PlanSettings.from_config(settings["plan"]),
            train=train,
            predict=PredictSettings.from_config(settings["predict"], device=train.device),
        )
