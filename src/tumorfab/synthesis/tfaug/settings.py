"""TF-Aug's settings (``tfaug`` in the config), each built by ``from_config``.

The defaults live in the config schema only; ``from_config`` takes a validated
section (every key present), refuses unknown or missing keys, and makes the
checks JSON Schema cannot express, each error naming its key. What the
controls mean is in ``tumorfab.synthesis.tfaug.controls``, the mask
augmentation in ``tumorfab.synthesis.tfaug.masks``, the mass effect in
``tumorfab.synthesis.tfaug.mass_effect``, the fit of (a, b) in
``tumorfab.synthesis.tfaug.intensity_fit``. Imports nothing heavy: the
workflow builds these while it builds the DAG.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

from tumorfab.config import Settings, config_section
from tumorfab.labels import LABEL_KEYS

LOCATION_MODES = ("any", "coordinates", "hemisphere", "tissue")
#: The location control's tissues and their class in ``controls.tissue_classes``.
TISSUES = {"csf": 1, "gm": 2, "wm": 3}


def parse_range(value, what: str) -> tuple[float, float]:
    """A number (fixed) or ``[low, high]`` -> ``(low, high)``."""
    if isinstance(value, (int, float)):
        return float(value), float(value)
    if isinstance(value, Sequence) and len(value) == 2:
        low, high = float(value[0]), float(value[1])
        if low <= high:
            return low, high
    raise ValueError(f"{what}: expected a number or [low, high] with low <= high, got {value!r}")


@dataclass(frozen=True)
class MaskAugmentation(Settings):
    """``tfaug.masks``: the paper's mask augmentation (paper 002 §2.1) and the re-draw rule."""

    scale: tuple[float, float]
    rotation_deg: float
    flip_prob: float
    shift_mm: float
    combine_prob: float
    combine_max: int
    max_outside_fraction: float
    max_tries: int

    @classmethod
    def from_config(cls, settings: Mapping) -> MaskAugmentation:
        settings = config_section(settings, cls.__dataclass_fields__, "tfaug.masks")
        settings["scale"] = tuple(float(v) for v in settings["scale"])
        made = cls(**settings)
        low, high = made.scale
        if not 0 < low <= high:
            raise ValueError(f"tfaug.masks.scale {list(made.scale)}: need 0 < low <= high")
        if not 0 <= made.max_outside_fraction < 1:
            raise ValueError("tfaug.masks.max_outside_fraction must be in [0, 1)")
        if made.combine_max < 1 or made.max_tries < 1:
            raise ValueError("tfaug.masks.combine_max and max_tries must be >= 1")
        return made


@dataclass(frozen=True)
class LocationSpec(Settings):
    """``tfaug.controls.location``; the fields of other modes are None."""

    mode: str
    center_mm: tuple[float, float, float] | None = None
    radius_mm: float | None = None
    side: str | None = None
    tissue: str | None = None

    @classmethod
    def from_config(cls, settings: Mapping) -> LocationSpec:
        settings = dict(settings)
        if "mode" not in settings:
            raise ValueError(f"tfaug.controls.location: mode missing (one of {LOCATION_MODES})")
        mode = settings.pop("mode")
        allowed = {
            "any": set(),
            "coordinates": {"center_mm", "radius_mm"},
            "hemisphere": {"side"},
            "tissue": {"tissue"},
        }
        if mode not in allowed:
            raise ValueError(f"tfaug.controls.location.mode {mode!r}: one of {LOCATION_MODES}")
        unknown = set(settings) - allowed[mode]
        if unknown:
            raise ValueError(f"tfaug.controls.location (mode {mode}): unknown keys {sorted(unknown)}")
        if mode == "coordinates":
            center = settings.get("center_mm")
            if center is None or len(center) != 3:
                raise ValueError("tfaug.controls.location: mode coordinates needs center_mm: [x, y, z]")
            if "radius_mm" not in settings:
                raise ValueError("tfaug.controls.location: mode coordinates needs radius_mm")
            radius = float(settings["radius_mm"])
            if radius <= 0:
                raise ValueError("tfaug.controls.location.radius_mm must be > 0")
            return cls(mode, center_mm=tuple(float(v) for v in center), radius_mm=radius)
        if mode == "hemisphere":
            side = settings.get("side")
            if side not in ("left", "right"):
                raise ValueError("tfaug.controls.location: mode hemisphere needs side: left or right")
            return cls(mode, side=side)
        if mode == "tissue":
            tissue = settings.get("tissue")
            if tissue not in TISSUES:
                raise ValueError(f"tfaug.controls.location: mode tissue needs tissue: one of {sorted(TISSUES)}")
            return cls(mode, tissue=tissue)
        return cls(mode)

    def record(self) -> dict:
        """The control as given (for the manifest)."""
        if self.mode == "coordinates":
            return {"mode": self.mode, "center_mm": list(self.center_mm), "radius_mm": self.radius_mm}
        if self.mode == "hemisphere":
            return {"mode": self.mode, "side": self.side}
        if self.mode == "tissue":
            return {"mode": self.mode, "tissue": self.tissue}
        return {"mode": self.mode}


@dataclass(frozen=True)
class Controls(Settings):
    """``tfaug.controls``: what the user asks of every lesion (paper 000's
    configurable location, size, intensity and heterogeneity, and the number
    of lesions). ``offset`` is ``(label, (low, high))`` per subregion, in label order."""

    location: LocationSpec
    size_ml: tuple[float, float] | None
    n_lesions: tuple[int, int]
    offset: tuple[tuple[int, tuple[float, float]], ...]
    heterogeneity_amplitude: tuple[float, float]
    heterogeneity_scale_mm: float

    @classmethod
    def from_config(cls, settings: Mapping) -> Controls:
        settings = config_section(
            settings, ("location", "size_ml", "n_lesions", "offset", "heterogeneity"), "tfaug.controls"
        )
        size = settings["size_ml"]
        if size is not None:
            size = parse_range(size, "tfaug.controls.size_ml")
            if size[0] <= 0:
                raise ValueError("tfaug.controls.size_ml must be > 0 ml")
        low, high = parse_range(settings["n_lesions"], "tfaug.controls.n_lesions")
        if low < 1 or low != int(low) or high != int(high):
            raise ValueError("tfaug.controls.n_lesions: whole numbers >= 1")
        offsets = dict(settings["offset"])
        unknown = set(offsets) - set(LABEL_KEYS.values())
        if unknown:
            raise ValueError(f"tfaug.controls.offset: unknown subregions {sorted(unknown)} (ncr, ed, et)")
        missing = [name for name in LABEL_KEYS.values() if name not in offsets]
        if missing:
            raise ValueError(f"tfaug.controls.offset: missing subregions {missing}")
        offset = tuple(
            (label, parse_range(offsets[name], f"tfaug.controls.offset.{name}"))
            for label, name in sorted(LABEL_KEYS.items())
        )
        texture = dict(settings["heterogeneity"])
        unknown = set(texture) - {"amplitude", "scale_mm"}
        if unknown:
            raise ValueError(f"tfaug.controls.heterogeneity: unknown keys {sorted(unknown)}")
        missing = [key for key in ("amplitude", "scale_mm") if key not in texture]
        if missing:
            raise ValueError(f"tfaug.controls.heterogeneity: missing keys {missing}")
        amplitude = parse_range(texture["amplitude"], "tfaug.controls.heterogeneity.amplitude")
        if amplitude[0] < 0:
            raise ValueError("tfaug.controls.heterogeneity.amplitude must be >= 0")
        scale_mm = float(texture["scale_mm"])
        if scale_mm <= 0:
            raise ValueError("tfaug.controls.heterogeneity.scale_mm must be > 0")
        return cls(
            LocationSpec.from_config(settings["location"]),
            size,
            (int(low), int(high)),
            offset,
            amplitude,
            scale_mm,
        )


@dataclass(frozen=True)
class MassEffect(Settings):
    """``tfaug.mass_effect`` (not in the paper): magnitude (mm) a number or [low, high]."""

    enabled: bool
    magnitude_mm: tuple[float, float]
    steps: int

    @classmethod
    def from_config(cls, settings: Mapping) -> MassEffect:
        settings = config_section(settings, ("enabled", "magnitude_mm", "steps"), "tfaug.mass_effect")
        magnitude = parse_range(settings["magnitude_mm"], "tfaug.mass_effect.magnitude_mm")
        if magnitude[0] < 0:
            raise ValueError("tfaug.mass_effect.magnitude_mm must be >= 0")
        steps = int(settings["steps"])
        if steps < 1:
            raise ValueError("tfaug.mass_effect.steps must be >= 1")
        return cls(bool(settings["enabled"]), magnitude, steps)


@dataclass(frozen=True)
class IntensityFitSettings(Settings):
    """``tfaug.intensity_fit``: the SGD fit of (a, b) on F (paper 002 §2.1, §3.1.2).

    The field order is the order ``intensity.json`` records them in."""

    epochs: int
    lr: float
    batch_size: int
    n_pairs: int
    patch_size: int
    n_stages: int

    @classmethod
    def from_config(cls, settings: Mapping) -> IntensityFitSettings:
        settings = config_section(settings, cls.__dataclass_fields__, "tfaug.intensity_fit")
        return cls(
            epochs=int(settings["epochs"]),
            lr=float(settings["lr"]),
            batch_size=int(settings["batch_size"]),
            n_pairs=int(settings["n_pairs"]),
            patch_size=int(settings["patch_size"]),
            n_stages=int(settings["n_stages"]),
        )

    def record(self) -> dict:
        """The settings as ``intensity.json`` records them."""
        return asdict(self)


@dataclass(frozen=True)
class TFAugSettings(Settings):
    """``tfaug``: the ROI blur B's sigma (voxels) and the sections above.

    The intensity fit reads ``blur_sigma``, ``masks`` and ``intensity_fit``
    only: it draws its pool with the paper's augmentation, whatever the
    lesion controls and the mass effect say."""

    blur_sigma: float
    masks: MaskAugmentation
    intensity_fit: IntensityFitSettings
    controls: Controls
    mass_effect: MassEffect

    @classmethod
    def from_config(cls, section: Mapping) -> TFAugSettings:
        section = config_section(section, cls.__dataclass_fields__, "tfaug")
        return cls(
            float(section["blur_sigma"]),
            MaskAugmentation.from_config(section["masks"]),
            IntensityFitSettings.from_config(section["intensity_fit"]),
            Controls.from_config(section["controls"]),
            MassEffect.from_config(section["mass_effect"]),
        )
