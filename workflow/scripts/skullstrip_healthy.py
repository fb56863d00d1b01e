from tumorfab.log import log_to
from tumorfab.preprocess.skullstrip import skullstrip

with log_to(snakemake.log[0]):
    result = skullstrip(
        image_path=snakemake.input.image,
        out_image=snakemake.output.image,
        out_mask=snakemake.output.brainmask,
        out_qc=snakemake.output.qc,
        failure_qc=snakemake.params.failure_qc,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
        settings=snakemake.params.skullstrip,
    )
    print(
        f"skull stripped {snakemake.wildcards.subject} with the {result['method']} method: "
        f"brain {result['brain_volume_ml']:.0f} ml"
    )
