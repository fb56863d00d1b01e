from tumorfab.log import log_to
from tumorfab.report.tables import write_table

with log_to(snakemake.log[0]):
    table = snakemake.params.table
    write_table(
        per_run_path=snakemake.input.per_run,
        out_csv=snakemake.output.csv,
        out_md=snakemake.output.md,
        experiments=table["experiments"],
        labels=snakemake.params.labels,
        title=table.get("title") or snakemake.wildcards.table,
        seeds=snakemake.params.seeds,
    )
