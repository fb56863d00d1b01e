from tumorfab.log import log_to
from tumorfab.preprocess.registration import coregister_to_t1

with log_to(snakemake.log[0]):
    similarity = coregister_to_t1(
        sequence_image=snakemake.input.image,
        t1_image=snakemake.input.t1,
        t1_brainmask=snakemake.input.t1_brainmask,
        out_transform=snakemake.output.transform,
        out_qc=snakemake.output.qc,
        seed=snakemake.params.seed,
    )
    print(
        f"co-registered the {snakemake.wildcards.channel} scan of {snakemake.wildcards.subject} "
        f"rigidly onto its T1: {similarity['metric']} {similarity['before']:.4f} -> "
        f"{similarity['after']:.4f} (lower is better)"
    )
