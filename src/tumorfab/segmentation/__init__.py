"""nnU-Net v2 segmentation experiments (paper 002 §3).

One raw dataset of the real cases (the plan is made on its training cases,
every experiment predicts its held-out cases), one plan shared by every
experiment, each case preprocessed once and linked into every experiment's
preprocessed dataset (the real training cases + a prefix of one synthetic
source), training on fold ``all`` with a seeded trainer, prediction of the
held-out cases and per-case evaluation. ``features`` exposes the frozen
encoder of the baseline model (the paper's feature extractor F).

Modules: ``settings`` (the stage's settings from the config, light to
import), ``dataset`` (images handed to nnU-Net, the raw dataset), ``plans``
(plan once, share the plan, the smaller demo network), ``preprocessed``
(preprocess each case once, assemble each experiment's preprocessed dataset),
``train`` (fold all, seeds, resume), ``predict``, ``evaluate``, ``features``
(F), ``environment`` (nnU-Net's environment variables) and
``trainers/nnUNetTrainerTumorfab.py`` (found through ``nnUNet_extTrainer``).

Folders (:mod:`tumorfab.study.layout`), under results/segmentation/:
``images/real/{case}/``, ``images/synthetic/{source}/{case_id}/`` (converted
images), ``plans/`` (the shared plan), ``preprocessed/real/``,
``preprocessed/synthetic/{source}/`` (each case once),
``nnunet/nnUNet_raw/`` (the one raw dataset, links),
``nnunet/{experiment}/nnUNet_preprocessed`` (links),
``nnunet/{experiment}/nnUNet_results/seed{seed}/`` (checkpoints, resumable),
``models/{experiment}/seed{seed}/`` (the finished model),
``predictions/{experiment}/seed{seed}/{case}.nii.gz`` and
``evaluation/{experiment}/seed{seed}/per_case.csv``.
"""
