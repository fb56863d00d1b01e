from tumorfab.log import log_to
from tumorfab.report.figures import plot_mosaic
from tumorfab.synthesis import source_label

with log_to(snakemake.log[0]):
    source = snakemake.wildcards.source
    plot_mosaic(
        cases_dir=snakemake.input.cases,
        manifest_path=snakemake.input.manifest,
        out_png=snakemake.output.figure,
        modalities=snakemake.params.modalities,
        n_cases=snakemake.params.report.mosaic_cases,
        title=source_label(source),
    )
