from tumorfab.log import log_to
from tumorfab.segmentation.dataset import build_raw_dataset

with log_to(snakemake.log[0]):
    synthetic = snakemake.params.experiment["n_synthetic"] > 0
    build_raw_dataset(
        out_root=snakemake.output[0],
        experiment=snakemake.wildcards.experiment,
        modalities=snakemake.params.modalities,
        train_cases=snakemake.params.train_cases,
        val_cases=snakemake.params.val_cases,
        real_image_root=snakemake.params.real_image_root,
        real_case_root=snakemake.params.real_case_root,
        n_synthetic=snakemake.params.experiment["n_synthetic"],
        synthetic_manifest=snakemake.input.manifest if synthetic else None,
        synthetic_image_root=snakemake.input.synthetic_images if synthetic else None,
        synthetic_cases_root=snakemake.params.synthetic_cases_root if synthetic else None,
    )
