from tumorfab.log import log_to
from tumorfab.segmentation.preprocessed import preprocess_synthetic

with log_to(snakemake.log[0]):
    preprocess_synthetic(
        plans_file=snakemake.input.plans,
        modalities=snakemake.params.modalities,
        manifest=snakemake.input.manifest,
        image_root=snakemake.input.images,
        cases_root=snakemake.params.cases_dir,
        out_dir=snakemake.output[0],
        configuration=snakemake.params.configuration,
    )
