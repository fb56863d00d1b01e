from tumorfab.log import log_to
from tumorfab.preprocess.normalize import normalize_healthy_channel
from tumorfab.preprocess.qc import orthogonal_slices_png

with log_to(snakemake.log[0]):
    channel = snakemake.wildcards.channel
    normalize_healthy_channel(
        image=snakemake.input.image,
        t1=snakemake.input.t1n,
        brainmask=snakemake.input.brainmask,
        out_dir=snakemake.params.case_dir,
        channel=channel,
        settings=snakemake.params.normalize,
    )
    orthogonal_slices_png(
        snakemake.output.image,
        snakemake.output.qc,
        title=f"{snakemake.wildcards.subject}: {channel} registered, in [-1, 1]; cyan = reference brain",
        outline=snakemake.input.reference_brainmask,
    )
