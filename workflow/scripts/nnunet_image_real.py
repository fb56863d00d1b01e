from tumorfab.log import log_to
from tumorfab.segmentation.dataset import convert_real_case

with log_to(snakemake.log[0]):
    convert_real_case(
        case_dir=snakemake.params.case_dir,
        out_dir=snakemake.params.out_dir,
        modalities=snakemake.params.modalities,
    )
