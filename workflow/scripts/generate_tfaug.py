from tumorfab.log import log_to
from tumorfab.synthesis.tfaug.generate import generate_tfaug

with log_to(snakemake.log[0]):
    generate_tfaug(
        real_case_dirs=snakemake.params.real_case_dirs,
        healthy_case_dirs=snakemake.params.healthy_case_dirs,
        intensity_json=snakemake.input.intensity,
        out_dir=snakemake.output.cases,
        manifest_path=snakemake.output.manifest,
        n_cases=snakemake.params.n_cases,
        seed=snakemake.params.seed,
        modalities=snakemake.params.modalities,
        settings=snakemake.params.tfaug,
    )
