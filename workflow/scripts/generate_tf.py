from tumorfab.log import log_to
from tumorfab.synthesis.tfgan.refine import generate_tf

with log_to(snakemake.log[0]):
    generate_tf(
        coarse_manifest=snakemake.input.coarse_manifest,
        coarse_cases_dir=snakemake.input.coarse_cases,
        generator_path=snakemake.input.generator,
        out_dir=snakemake.output.cases,
        manifest_path=snakemake.output.manifest,
        n_cases=snakemake.params.n_cases,
        modalities=snakemake.params.modalities,
        seed=snakemake.params.seed,
        tfgan=snakemake.params.tfgan,
        threads=snakemake.threads,
    )
