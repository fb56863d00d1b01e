from tumorfab.log import log_to
from tumorfab.report.figures import plot_refinement

with log_to(snakemake.log[0]):
    plot_refinement(
        coarse_cases_dir=snakemake.input.coarse_cases,
        refined_cases_dir=snakemake.input.refined_cases,
        refined_manifest=snakemake.input.refined_manifest,
        out_png=snakemake.output.figure,
        modalities=snakemake.params.modalities,
        n_cases=snakemake.params.report.mosaic_cases,
    )
