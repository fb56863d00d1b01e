from pathlib import Path

from tumorfab.log import log_to
from tumorfab.segmentation.dataset import convert_real_case

with log_to(snakemake.log[0]):
    convert_real_case(
        case_dir=Path(snakemake.input.brainmask).parent,
        out_dir=Path(snakemake.output[0]).parent,
        modalities=snakemake.params.modalities,
    )
