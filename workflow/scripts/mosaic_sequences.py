from pathlib import Path

from tumorfab.log import log_to
from tumorfab.report.figures import plot_sequences

with log_to(snakemake.log[0]):
    plot_sequences(
        # The reference case's folder: the folder of its files.
        real_case_dir=Path(snakemake.input.real[0]).parent,
        sources=snakemake.params.sources,
        out_png=snakemake.output.figure,
        modalities=snakemake.params.modalities,
    )
