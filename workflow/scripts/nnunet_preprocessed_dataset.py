from tumorfab.log import log_to
from tumorfab.segmentation.preprocessed import build_preprocessed_dataset

with log_to(snakemake.log[0]):
    synthetic = snakemake.params.experiment["n_synthetic"] > 0
    build_preprocessed_dataset(
        out_root=snakemake.output[0],
        experiment=snakemake.wildcards.experiment,
        plans_file=snakemake.input.plans,
        fingerprint_file=snakemake.input.fingerprint,
        modalities=snakemake.params.modalities,
        train_cases=snakemake.params.train_cases,
        real_preprocessed=snakemake.input.real_preprocessed,
        n_synthetic=snakemake.params.experiment["n_synthetic"],
        synthetic_manifest=snakemake.input.manifest if synthetic else None,
        synthetic_preprocessed=snakemake.input.synthetic_preprocessed if synthetic else None,
        configuration=snakemake.params.configuration,
    )
