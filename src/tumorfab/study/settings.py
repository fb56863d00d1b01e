"""Every stage's settings, each built once from its config section.

:class:`StageSettings` holds one typed object per stage, made by that stage's
``from_config`` (its own checks included) from the validated config (defaults:
the schema). A rule's ``params`` is its stage's object, so a change to a
setting reruns exactly the jobs whose stage reads it; threads and memory are
not settings (they do not change what is computed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from tumorfab.preprocess.settings import NormalizeSettings, RegistrationSettings, SkullstripSettings
from tumorfab.report.settings import ReportSettings
from tumorfab.segmentation.settings import SegmentationSettings
from tumorfab.synthesis.carvemix import CarveMixSettings
from tumorfab.synthesis.gan_settings import Pix2PixSettings, TFGANSettings
from tumorfab.synthesis.tfaug.settings import TFAugSettings

#: Config keys that size a job (threads, memory) rather than change what it computes.
RESOURCE_KEYS = ("threads", "mem_mb")


def _without_resources(section: Mapping) -> dict:
    return {k: v for k, v in section.items() if k not in RESOURCE_KEYS}


def _skullstrip(config: Mapping) -> SkullstripSettings:
    return SkullstripSettings.from_config(config["skullstrip"])


def _registration(config: Mapping) -> RegistrationSettings:
    return RegistrationSettings.from_config(config["registration"])


def _normalize(config: Mapping) -> NormalizeSettings:
    return NormalizeSettings.from_config(config["normalize"])


def _carvemix(config: Mapping) -> CarveMixSettings:
    return CarveMixSettings.from_config(config["carvemix"])


def _tfaug(config: Mapping) -> TFAugSettings:
    return TFAugSettings.from_config(config["tfaug"])


def _tfgan(config: Mapping) -> TFGANSettings:
    return TFGANSettings.from_config(_without_resources(config["tfgan"]))


def _pix2pix(config: Mapping) -> Pix2PixSettings:
    return Pix2PixSettings.from_config(_without_resources(config["pix2pix"]), tfgan_epochs=config["tfgan"]["epochs"])


def _segmentation(config: Mapping) -> SegmentationSettings:
    return SegmentationSettings.from_config(config["segmentation"])


def _report(config: Mapping) -> ReportSettings:
    return ReportSettings.from_config(config["report"])


@dataclass(frozen=True)
class StageSettings:
    """One settings object per stage (attribute = the config section's name)."""

    skullstrip: SkullstripSettings
    registration: RegistrationSettings
    normalize: NormalizeSettings
    carvemix: CarveMixSettings
    tfaug: TFAugSettings
    tfgan: TFGANSettings
    pix2pix: Pix2PixSettings
    segmentation: SegmentationSettings
    report: ReportSettings

    @classmethod
    def from_config(cls, config: Mapping) -> "StageSettings":
        """From the validated config; a ``ValueError`` names the key a stage refuses."""
        return cls(
            skullstrip=_skullstrip(config),
            registration=_registration(config),
            normalize=_normalize(config),
            carvemix=_carvemix(config),
            tfaug=_tfaug(config),
            tfgan=_tfgan(config),
            pix2pix=_pix2pix(config),
            segmentation=_segmentation(config),
            report=_report(config),
        )
