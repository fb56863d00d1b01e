from tumorfab.log import log_to
from tumorfab.synthesis.tfgan.train import train_tfgan

with log_to(snakemake.log[0]):
    train_tfgan(
        coarse_manifest=snakemake.input.coarse_manifest,
        coarse_cases_dir=snakemake.input.coarse_cases,
        real_case_dirs=snakemake.params.real_case_dirs,
        feature_extractor_dir=snakemake.input.feature_extractor,
        work_dir=snakemake.params.work_dir,
        out_generator=snakemake.output.generator,
        out_losses=snakemake.output.losses,
        out_curves=snakemake.output.curves,
        modalities=snakemake.params.modalities,
        tfgan=snakemake.params.tfgan,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
    )
