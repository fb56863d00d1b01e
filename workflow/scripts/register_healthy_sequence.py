from tumorfab.log import log_to
from tumorfab.preprocess.registration import register_sequence_to_reference

with log_to(snakemake.log[0]):
    register_sequence_to_reference(
        sequence_image=snakemake.input.image,
        coregistration=snakemake.input.coregistration,
        reference_transforms=snakemake.input.transform,
        registered_brainmask=snakemake.input.brainmask,
        out_image=snakemake.output.image,
        settings=snakemake.params.registration,
    )
