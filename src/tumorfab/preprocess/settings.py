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


#: Values of ``skullstrip.method``; ``auto`` is SynthStrip with weights, else
#: :data:`AUTO_WITHOUT_WEIGHTS`.
SKULLSTRIP_METHODS = ("auto", "synthstrip", "deepbet", "atlas")
#: What ``auto`` runs without SynthStrip weights: deepbet keeps the CSF around
#: the brain, as BraTS brain masks do (docs/interpretations.md, "Brain
#: extraction: deepbet vs atlas").
AUTO_WITHOUT_WEIGHTS = "deepbet"


@dataclass(frozen=True)
class SkullstripSettings(Settings):
    """``skullstrip``: the brain extractor (``method``) and its settings.

    ``from_config`` resolves ``auto`` (SynthStrip with the user's weights,
    else :data:`AUTO_WITHOUT_WEIGHTS`), so ``method`` names the extractor that
    runs. SynthStrip without weights, and weights with another method (they
    would go unused, and the rule would still ask for a GPU), are refused
    naming the keys."""

    synthstrip_weights: str | None
    border_mm: float
    atlas_transform: str
    brain_volume_ml: tuple[float, float]
    method: str

    def __post_init__(self) -> None:
        method = self.method
        if method == "auto":
            method = "synthstrip" if self.synthstrip_weights else AUTO_WITHOUT_WEIGHTS
        if method not in SKULLSTRIP_METHODS:
            raise ValueError(f"skullstrip.method must be one of {list(SKULLSTRIP_METHODS)}, got {method!r}")
        if method == "synthstrip" and not self.synthstrip_weights:
            raise ValueError(
                "skullstrip.method is 'synthstrip' but skullstrip.synthstrip_weights is null: give FreeSurfer's "
                "synthstrip.1.pt, or choose method auto, deepbet or atlas"
            )
        if method != "synthstrip" and self.synthstrip_weights:
            raise ValueError(
                f"skullstrip.method is {method!r} but skullstrip.synthstrip_weights is set "
                f"({self.synthstrip_weights}), which it would not use: set method to synthstrip or auto, "
                "or synthstrip_weights to null"
            )
        object.__setattr__(self, "method", method)

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
            section["method"],
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
