"""The settings of the study's two GANs, typed and checked: TF-GAN (``tfgan``) and Pix2Pix (``pix2pix``).

:class:`GANSettings` holds what both GANs read alike: the widths of G and
D's first layer, the schedule (epochs, batch, crop), Adam's learning rates
and betas, mixed precision, checkpoints and the sliding window of
generation. :class:`TFGANSettings` and :class:`Pix2PixSettings` add what is
their own (TF-GAN's D cap, Eq. 5's weights, F's stages, the translation
term's weight; Pix2Pix's PatchGAN depth and λ_L1).

``from_config`` takes the validated config section (defaults: the schema;
the job sizes ``threads`` and ``mem_mb`` are left out) and checks what the
schema cannot: that crops and windows suit G's depth (and Pix2Pix's crops D's
depth); a ``ValueError`` names the key. ``as_record`` is the settings as
plain values; ``generator_record`` what a generator file stores of them (for
TF-GAN on one modality, without the translator's keys) and ``from_record``
reads it back.

This module imports nothing heavy: the workflow builds these objects while it
builds the DAG (``tumorfab.study.settings``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar, Mapping, Self

from tumorfab.config import Settings, config_section, without_resources

#: ``mixed_precision``'s values (``tumorfab.synthesis.gan.autocast_dtype``).
MIXED_PRECISION = ("auto", "on", "off")


def unet_sizes(n_levels: int) -> tuple[int, int]:
    """``(multiple, minimum)`` of the spatial sizes a U-Net of ``n_levels``
    resolution levels with instance norm takes: ``n_levels - 1`` stride-2
    down-samplings need multiples of ``2**(n_levels - 1)``, and instance norm
    needs two voxels per axis at the bottleneck, so twice that at least."""
    multiple = 2 ** (n_levels - 1)
    return multiple, 2 * multiple


def patchgan_min_size(n_layers: int) -> int:
    """The smallest spatial size Pix2Pix's PatchGAN of ``n_layers`` stride-2
    layers takes: two voxels per axis at its last normalised layer."""
    return 3 * 2**n_layers


def _ints(value) -> tuple[int, ...]:
    return tuple(int(v) for v in value)


def _pair(value) -> tuple[float, float]:
    low, high = value
    return float(low), float(high)


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


#: How ``from_config`` types a value, by the field's annotation.
_CONVERTERS = {"int": int, "float": float, "str": str, "tuple[int, ...]": _ints, "tuple[float, float]": _pair}


@dataclass(frozen=True)
class GANSettings(Settings):
    """What both GANs read alike (see the module docstring); a subclass per GAN."""

    generator_widths: tuple[int, ...]
    discriminator_width: int
    epochs: int
    batch_size: int
    crop: int
    lr_generator: float
    lr_discriminator: float
    betas: tuple[float, float]
    checkpoint_every: int
    mixed_precision: str
    window: int
    overlap: float

    #: The config section (the prefix of every error) and the key a generator file stores the settings under.
    SECTION: ClassVar[str]
    #: The section's keys in the order a generator file stores them (:meth:`as_record`):
    #: the file's bytes, and so the manifests' ``generator_sha256``, depend on it.
    KEYS: ClassVar[tuple[str, ...]]

    @classmethod
    def from_config(cls, section: Mapping) -> Self:
        """From the validated config section (or a generator file's record)."""
        section = config_section(without_resources(section), cls.KEYS, cls.SECTION)
        values = {}
        for field in fields(cls):
            value = section[field.name]
            try:
                values[field.name] = _CONVERTERS[field.type](value)
            except (TypeError, ValueError):
                raise ValueError(f"{cls.SECTION}.{field.name}: {value!r} is not of type {field.type}") from None
        return cls(**values)

    def __post_init__(self):
        if len(self.generator_widths) < 2 or min(self.generator_widths) < 1:
            raise ValueError(f"{self.SECTION}.generator_widths: at least two positive widths, got {list(self.generator_widths)}")
        if self.epochs < 1:
            raise ValueError(f"{self.SECTION}.epochs: at least one epoch, got {self.epochs}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"{self.SECTION}.mixed_precision: one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        multiple, minimum = unet_sizes(len(self.generator_widths))
        for key in ("crop", "window"):
            size = getattr(self, key)
            if size % multiple or size < minimum:
                raise ValueError(
                    f"{self.SECTION}.{key}: {size} does not suit G's {len(self.generator_widths)} levels "
                    f"(a multiple of {multiple} and at least {minimum})"
                )

    def as_record(self) -> dict:
        """The settings as plain values (lists for tuples) in :data:`KEYS` order: what a
        generator file stores, and what a checkpoint's settings digest hashes."""
        return {key: _plain(getattr(self, key)) for key in self.KEYS}

    def generator_record(self, n_modalities: int) -> dict:
        """What a generator file of a training on ``n_modalities`` channels stores under
        :data:`SECTION` (and its checkpoint's digest hashes): :meth:`as_record`."""
        return self.as_record()

    @classmethod
    def from_record(cls, record: Mapping) -> Self:
        """The settings a generator file stores (:meth:`generator_record`)."""
        return cls.from_config(record)


@dataclass(frozen=True)
class TFGANSettings(GANSettings):
    """TF-GAN (paper 002 §2.2, §3.1.2): D's channel cap, Eq. 2's margin, Eq. 5's weights, F's
    stages; with more than one modality, the weight of the translation term
    (docs/interpretations.md, "TF-GAN as a modality translator")."""

    discriminator_max_channels: int
    hinge_margin: float
    lambda_patch: float
    lambda_global: float
    lambda_c: tuple[float, float]
    lambda_percep: float
    n_stages: int
    translation_weight: float

    SECTION: ClassVar[str] = "tfgan"
    KEYS: ClassVar[tuple[str, ...]] = (
        "generator_widths", "discriminator_width", "discriminator_max_channels", "epochs", "batch_size", "crop",
        "lr_generator", "lr_discriminator", "betas", "hinge_margin", "lambda_patch", "lambda_global", "lambda_c",
        "lambda_percep", "n_stages", "checkpoint_every", "mixed_precision", "window", "overlap", "translation_weight",
    )
    #: Keys only a translator (more than one modality) reads. A one-modality
    #: generator file leaves them out, so it is the paper's TF-GAN's file byte
    #: for byte, and reads them back as 0: one modality has nothing to translate.
    TRANSLATOR_KEYS: ClassVar[tuple[str, ...]] = ("translation_weight",)

    def generator_record(self, n_modalities: int) -> dict:
        """:meth:`as_record`, less :data:`TRANSLATOR_KEYS` for one modality."""
        record = self.as_record()
        if n_modalities == 1:
            for key in self.TRANSLATOR_KEYS:
                del record[key]
        return record

    @classmethod
    def from_record(cls, record: Mapping) -> Self:
        """The settings of a generator file; :data:`TRANSLATOR_KEYS` it lacks (one modality) are 0."""
        return cls.from_config({**{key: 0.0 for key in cls.TRANSLATOR_KEYS}, **record})


@dataclass(frozen=True)
class Pix2PixSettings(GANSettings):
    """3D Pix2Pix (paper 002 §3.2.1 (2)): the PatchGAN's depth and λ_L1; ``epochs`` resolved."""

    discriminator_layers: int
    lambda_l1: float

    SECTION: ClassVar[str] = "pix2pix"
    KEYS: ClassVar[tuple[str, ...]] = (
        "generator_widths", "discriminator_width", "discriminator_layers", "epochs", "batch_size", "crop",
        "lr_generator", "lr_discriminator", "betas", "lambda_l1", "checkpoint_every", "mixed_precision", "window",
        "overlap",
    )

    @classmethod
    def from_config(cls, section: Mapping, tfgan_epochs: int | None = None) -> Self:
        """As :meth:`GANSettings.from_config`; ``epochs`` null is TF-GAN's ``tfgan_epochs``
        (paper 002 trains every GAN for the same epochs)."""
        section = dict(section)
        if "epochs" in section and section["epochs"] is None:
            if tfgan_epochs is None:
                raise ValueError("pix2pix.epochs: null means tfgan.epochs, which was not given")
            section["epochs"] = tfgan_epochs
        return super().from_config(section)

    def __post_init__(self):
        super().__post_init__()
        minimum = patchgan_min_size(self.discriminator_layers)
        if self.crop < minimum:
            raise ValueError(f"pix2pix.crop: {self.crop} is below D's minimum {minimum} ({self.discriminator_layers} layers)")
