"""The preprocessing stage's settings: skull stripping, bias-field correction,
registration, normalization.

Each class is built from its validated config section (defaults: the config
schema) by ``from_config``, which also makes the checks JSON Schema cannot
express. Imports nothing heavy: the workflow builds these while it builds the DAG.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from tumorfab.config import Settings, config_section


@dataclass(frozen=True)
class SkullstripSettings(Settings):
    """``skullstrip``: SynthStrip with the user's weights, else the MNI atlas method."""

    synthstrip_weights: str | None
    border_mm: float
    atlas_transform: str
    brain_volume_ml: tuple[float, float]

    @classmethod
    def from_config(cls, section: Mapping) -> SkullstripSettings:
        section = config_section(section, cls.__dataclass_fields__, "skullstrip")
        low, high = (float(v) for v in section["brain_volume_ml"])
        if low >= high:
            raise ValueError("skullstrip.brain_volume_ml must be [min, max] with min < max")
        return cls(
            section["synthstrip_weights"] or None,
            float(section["border_mm"]),
            section["atlas_transform"],
            (low, high),
        )


@dataclass(frozen=True)
class BiasCorrectionSettings(Settings):
    """``bias_correction``: N4 on every healthy scan, in its brain mask, on its
    own grid (not in the paper; docs/interpretations.md, "Bias-field correction")."""

    enabled: bool
    fit_voxel_mm: float
    spline_distance_mm: int
    iterations: tuple[int, ...]
    convergence_threshold: float

    @classmethod
    def from_config(cls, section: Mapping) -> BiasCorrectionSettings:
        section = config_section(section, cls.__dataclass_fields__, "bias_correction")
        return cls(
            bool(section["enabled"]),
            float(section["fit_voxel_mm"]),
            int(section["spline_distance_mm"]),
            tuple(int(n) for n in section["iterations"]),
            float(section["convergence_threshold"]),
        )


@dataclass(frozen=True)
class RegistrationSettings(Settings):
    """``registration`` without ``reference_case`` (the study's choice of case,
    not how a scan is registered): the ANTs transform and the interpolator."""

    type_of_transform: str
    interpolator: str

    @classmethod
    def from_config(cls, section: Mapping) -> RegistrationSettings:
        section = {k: v for k, v in section.items() if k != "reference_case"}
        return cls(**config_section(section, cls.__dataclass_fields__, "registration"))


@dataclass(frozen=True)
class NormalizeSettings(Settings):
    """``normalize``: per BraTS channel, the intensity (a multiple of the
    brain's white-matter peak) that maps to +1; ``(channel, ceiling)`` pairs
    in channel-name order."""

    ceiling_over_white_matter: tuple[tuple[str, float], ...]

    @classmethod
    def from_config(cls, section: Mapping) -> NormalizeSettings:
        section = config_section(section, cls.__dataclass_fields__, "normalize")
        ceilings = {channel: float(value) for channel, value in dict(section["ceiling_over_white_matter"]).items()}
        for channel, ceiling in ceilings.items():
            if ceiling <= 1:
                raise ValueError(
                    f"normalize.ceiling_over_white_matter.{channel} must be > 1 (white matter below +1), "
                    f"got {ceiling:g}"
                )
        return cls(tuple(sorted(ceilings.items())))

    def ceiling(self, channel: str) -> float:
        """The multiple of ``channel``'s white-matter peak that maps to +1."""
        ceilings = dict(self.ceiling_over_white_matter)
        if channel not in ceilings:
            raise ValueError(f"normalize.ceiling_over_white_matter has no {channel!r} (it has {sorted(ceilings)})")
        return ceilings[channel]
