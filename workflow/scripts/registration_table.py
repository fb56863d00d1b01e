import pandas as pd

from tumorfab.io import save_csv
from tumorfab.log import log_to

with log_to(snakemake.log[0]):
    table = pd.concat([pd.read_csv(path) for path in snakemake.input], ignore_index=True)
    # ANTs reports the metric as a cost: lower is more similar.
    table["improved"] = table["after"] < table["before"]
    save_csv(table, snakemake.output[0])
