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

from tumorfab.preprocess.settings import (
    BiasCorrectionSettings,
    NormalizeSettings,
    RegistrationSettings,
    SkullstripSettings,
)
from tumorfab.report.settings import ReportSettings
from tumorfab.segmentation.settings import SegmentationSettings
from tumorfab.synthesis.carvemix import CarveMixSettings
from tumorfab.synthesis.gan_settings import Pix2PixSettings, TFGANSettings
from tumorfab.synthesis.tfaug.settings import TFAugSettings


@dataclass(frozen=True)
class StageSettings:
    """One settings object per stage (attribute = the config section's name)."""

    skullstrip: SkullstripSettings
    bias_correction: BiasCorrectionSettings
    registration: RegistrationSettings
    normalize: NormalizeSettings
    carvemix: CarveMixSettings
    tfaug: TFAugSettings
    tfgan: TFGANSettings
    pix2pix: Pix2PixSettings
    segmentation: SegmentationSettings
    report: ReportSettings

    @classmethod
    def from_config(cls, config: Mapping) -> StageSettings:
        """From the validated config; a ``ValueError`` names the key a stage refuses."""
        return cls(
            skullstrip=SkullstripSettings.from_config(config["skullstrip"]),
            bias_correction=BiasCorrectionSettings.from_config(config["bias_correction"]),
            registration=RegistrationSettings.from_config(config["registration"]),
            normalize=NormalizeSettings.from_config(config["normalize"]),
            carvemix=CarveMixSettings.from_config(config["carvemix"]),
            tfaug=TFAugSettings.from_config(config["tfaug"]),
            tfgan=TFGANSettings.from_config(config["tfgan"]),
            # Pix2Pix trains as long as TF-GAN unless its epochs say otherwise.
            pix2pix=Pix2PixSettings.from_config(config["pix2pix"], tfgan_epochs=config["tfgan"]["epochs"]),
            segmentation=SegmentationSettings.from_config(config["segmentation"]),
            report=ReportSettings.from_config(config["report"]),
        )
