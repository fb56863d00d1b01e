from tumorfab.log import log_to
from tumorfab.segmentation.dataset import convert_synthetic

with log_to(snakemake.log[0]):
    convert_synthetic(
        manifest=snakemake.input.manifest,
        cases_dir=snakemake.params.cases_dir,
        out_dir=snakemake.output[0],
        modalities=snakemake.params.modalities,
    )
