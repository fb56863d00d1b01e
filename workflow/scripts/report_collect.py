from tumorfab.log import log_to
from tumorfab.report.tables import write_collected

with log_to(snakemake.log[0]):
    write_collected(
        csv_paths=list(snakemake.input.csvs),
        per_case_path=snakemake.output.per_case,
        per_run_path=snakemake.output.per_run,
    )
