from tumorfab.log import log_to
from tumorfab.preprocess.normalize import normalize_healthy_scan
from tumorfab.preprocess.qc import orthogonal_slices_png

with log_to(snakemake.log[0]):
    normalize_healthy_scan(
        image=snakemake.input.image,
        brainmask=snakemake.input.brainmask,
        out_dir=snakemake.params.case_dir,
        modality="t1n",
        settings=snakemake.params.normalize,
    )
    orthogonal_slices_png(
        snakemake.output.image,
        snakemake.output.qc,
        title=f"{snakemake.wildcards.subject}: registered, in [-1, 1]; cyan = reference brain",
        outline=snakemake.input.reference_brainmask,
    )
