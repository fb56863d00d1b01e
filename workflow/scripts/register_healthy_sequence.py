from tumorfab.log import log_to
from tumorfab.preprocess.registration import register_sequence_to_reference

with log_to(snakemake.log[0]):
    register_sequence_to_reference(
        sequence_image=snakemake.input.image,
        coregistration=snakemake.input.coregistration,
        t1_brainmask=snakemake.input.t1_brainmask,
        reference_transforms=snakemake.input.transform,
        registered_brainmask=snakemake.input.brainmask,
        out_image=snakemake.output.image,
        settings=snakemake.params.registration,
        bias_correction=snakemake.params.bias_correction,
        seed=snakemake.params.seed,
    )
