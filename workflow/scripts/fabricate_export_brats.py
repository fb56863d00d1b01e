from tumorfab.fabricate.export import export_brats, load_intensity_scale
from tumorfab.log import log_to

with log_to(snakemake.log[0]):
    export_brats(
        cases_dir=snakemake.input.cases,
        manifest=snakemake.input.manifest,
        out_dir=snakemake.output[0],
        prefix=snakemake.params.prefix,
        channels=snakemake.params.modalities,
        scale=load_intensity_scale(snakemake.input.scale),
        reference_image=snakemake.input.reference,
        cohort=snakemake.wildcards.cohort,
    )
