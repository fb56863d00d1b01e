from tumorfab.log import log_to
from tumorfab.report.intensities import write_intensities
from tumorfab.report.realism import write_realism

with log_to(snakemake.log[0]):
    write_realism(
        model_dir=snakemake.input.feature_extractor,
        n_stages=snakemake.params.n_stages,
        real_case_dirs=snakemake.params.real_case_dirs,
        sources=snakemake.params.sources,
        modalities=snakemake.params.modalities,
        out_csv=snakemake.output.csv,
        out_md=snakemake.output.md,
        out_png=snakemake.output.figure,
        reference_case_dirs=snakemake.params.reference_case_dirs or None,
    )
    write_intensities(
        real_case_dirs=snakemake.params.real_case_dirs,
        sources=snakemake.params.sources,
        modalities=snakemake.params.modalities,
        out_csv=snakemake.output.intensities_csv,
        out_md=snakemake.output.intensities_md,
        reference_case_dirs=snakemake.params.reference_case_dirs or None,
    )
