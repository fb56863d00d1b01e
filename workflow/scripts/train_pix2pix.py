from tumorfab.log import log_to
from tumorfab.synthesis.pix2pix.train import train_pix2pix

with log_to(snakemake.log[0]):
    train_pix2pix(
        real_case_dirs=snakemake.params.real_case_dirs,
        work_dir=snakemake.params.work_dir,
        out_generator=snakemake.output.generator,
        out_losses=snakemake.output.losses,
        out_curves=snakemake.output.curves,
        modalities=snakemake.params.modalities,
        pix2pix=snakemake.params.pix2pix,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
    )
