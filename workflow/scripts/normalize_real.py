from tumorfab.log import log_to
from tumorfab.preprocess.normalize import normalize_real_case
from tumorfab.preprocess.qc import orthogonal_slices_png

with log_to(snakemake.log[0]):
    modalities = snakemake.params.modalities
    normalize_real_case(
        images={m: snakemake.input[m] for m in modalities},
        seg=snakemake.input.seg,
        out_dir=snakemake.params.case_dir,
        settings=snakemake.params.normalize,
        remap_label_4_to_3=snakemake.params.remap_label_4_to_3,
    )
    orthogonal_slices_png(
        snakemake.output.images[0],
        snakemake.output.qc,
        title=f"{snakemake.wildcards.case}: {modalities[0]} in [-1, 1], labels NCR/ED/ET",
        seg=snakemake.output.seg,
    )
