import torch

from tumorfab.log import log_to
from tumorfab.report.translation import write_translation
from tumorfab.synthesis.tfgan.refine import load_trained_generator, translate

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    generator = load_trained_generator(snakemake.input.generator)
    modalities = list(snakemake.params.modalities)
    if generator.modalities != modalities:
        raise ValueError(f"{snakemake.input.generator}: G was trained for {generator.modalities}, not {modalities}")
    write_translation(
        heldout_case_dirs=snakemake.params.heldout_case_dirs,
        train_case_dirs=snakemake.params.train_case_dirs,
        modalities=modalities,
        translate=lambda images, brainmask, labels, present: translate(generator, images, brainmask, labels, present),
        out_csv=snakemake.output.csv,
        out_md=snakemake.output.md,
    )
