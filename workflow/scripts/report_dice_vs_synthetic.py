import pandas as pd

from tumorfab.log import log_to
from tumorfab.report.figures import plot_dice_vs_synthetic

with log_to(snakemake.log[0]):
    plot_dice_vs_synthetic(
        per_run=pd.read_csv(snakemake.input.per_run),
        experiments=snakemake.params.experiments,
        out_png=snakemake.output.figure,
    )
