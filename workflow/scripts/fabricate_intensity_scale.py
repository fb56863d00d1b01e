from tumorfab.fabricate.export import intensity_scale, save_intensity_scale
from tumorfab.log import log_to

with log_to(snakemake.log[0]):
    save_intensity_scale(
        intensity_scale(snakemake.params.cases, snakemake.params.normalize), snakemake.output[0]
    )
