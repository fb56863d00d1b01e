"""Fabricate: named synthetic cohorts made from the study's trained pieces, exported in BraTS
layout and as nnU-Net datasets, each with its card (docs/interpretations.md, "Fabricated cohorts")."""
