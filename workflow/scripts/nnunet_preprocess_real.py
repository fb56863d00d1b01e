from tumorfab.log import log_to
from tumorfab.segmentation.preprocessed import preprocess_real

with log_to(snakemake.log[0]):
    preprocess_real(
        plans_file=snakemake.input.plans,
        modalities=snakemake.params.modalities,
        case_ids=snakemake.params.cases,
        image_root=snakemake.params.image_root,
        case_root=snakemake.params.case_root,
        out_dir=snakemake.output[0],
        configuration=snakemake.params.configuration,
    )
