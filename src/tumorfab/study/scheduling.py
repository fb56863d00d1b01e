"""Scheduler priorities: the jobs most others wait for run first.

More than half of the trainings wait for the study's critical path: the
feature extractor F's training (the baseline's first seed), then TF-Aug's
fit and generation and TF-GAN's training and refinement. Its jobs, and every
job that prepares data for nnU-Net, get :data:`CRITICAL_PATH`, so that they run
as soon as they can rather than after whichever training Snakemake picks
first. The healthy scans' chain (skull strip, register, normalize) comes just
below: TF-Aug's fit waits for it and for F, and F's chain is the longer and
more serial one, so it goes first and the healthy scans fill the other cores
meanwhile. Measured in the demo: docs/interpretations.md, "The demo's nnU-Net".
"""

from __future__ import annotations

from tumorfab.study.model import Study

CRITICAL_PATH = 10
HEALTHY_SCANS = CRITICAL_PATH - 1
#: The trainings of a fine-tuning chain: the fine-tune starts only after its
#: pretraining, so the chain goes before the trainings nothing waits for.
FINE_TUNING_CHAIN = 5


def training_priority(study: Study, experiment: str, seed: int) -> int:
    """F's training first; then the trainings of a fine-tuning chain; the others after."""
    if experiment == study.baseline and seed == study.seeds[0]:
        return CRITICAL_PATH
    return FINE_TUNING_CHAIN if study.in_fine_tuning_chain(experiment) else 0
