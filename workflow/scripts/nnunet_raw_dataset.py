from tumorfab.log import log_to
from tumorfab.segmentation.dataset import build_raw_dataset

with log_to(snakemake.log[0]):
    build_raw_dataset(
        out_root=snakemake.output[0],
        baseline=snakemake.params.baseline,
        modalities=snakemake.params.modalities,
        train_cases=snakemake.params.train_cases,
        val_cases=snakemake.params.val_cases,
        real_image_root=snakemake.params.real_image_root,
        real_case_root=snakemake.params.real_case_root,
    )
