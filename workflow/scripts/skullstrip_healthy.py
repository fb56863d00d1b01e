from tumorfab.log import log_to
from tumorfab.skullstrip import skullstrip

with log_to(snakemake.log[0]):
    method = skullstrip(
        image_path=snakemake.input.image,
        out_image=snakemake.output.image,
        out_mask=snakemake.output.brainmask,
        threads=snakemake.threads,
        **snakemake.params.skullstrip,
    )
    print(f"skull stripped {snakemake.wildcards.subject} with the {method} method")
