from tumorfab.log import log_to
from tumorfab.synthesis.pix2pix.generate import generate_pix2pix

with log_to(snakemake.log[0]):
    generate_pix2pix(
        layout_manifest=snakemake.input.layout_manifest,
        layout_cases_dir=snakemake.input.layout_cases,
        generator_path=snakemake.input.generator,
        out_dir=snakemake.output.cases,
        manifest_path=snakemake.output.manifest,
        n_cases=snakemake.params.n_cases,
        modalities=snakemake.params.modalities,
        seed=snakemake.params.seed,
        pix2pix=snakemake.params.pix2pix,
        threads=snakemake.threads,
    )
