import pandas as pd

from tumorfab.io import save_csv
from tumorfab.log import log_to
from tumorfab.preprocess.registration import register_to_reference

with log_to(snakemake.log[0]):
    similarity = register_to_reference(
        moving_image=snakemake.input.image,
        moving_mask=snakemake.input.brainmask,
        reference_image=snakemake.input.reference_image,
        reference_seg=snakemake.input.reference_seg,
        out_image=snakemake.output.image,
        out_mask=snakemake.output.brainmask,
        out_qc=snakemake.output.qc,
        settings=snakemake.params.registration,
        bias_correction=snakemake.params.bias_correction,
        seed=snakemake.params.seed,
        out_transforms=snakemake.output.get("transform"),
    )
    row = {
        "subject": snakemake.wildcards.subject,
        "reference_case": snakemake.params.reference_case,
        "transform": snakemake.params.registration.type_of_transform,
        **similarity,
    }
    save_csv(pd.DataFrame([row]), snakemake.output.similarity)
