from tumorfab.log import log_to
from tumorfab.synthesis.carvemix import generate_carvemix

with log_to(snakemake.log[0]):
    generate_carvemix(
        train_case_dirs=snakemake.params.train_case_dirs,
        out_dir=snakemake.output.cases,
        manifest_path=snakemake.output.manifest,
        n_cases=snakemake.params.n_cases,
        modalities=snakemake.params.modalities,
        settings=snakemake.params.carvemix,
        seed=snakemake.params.seed,
    )
