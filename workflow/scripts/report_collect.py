from tumorfab.log import log_to
from tumorfab.report.tables import write_collected

with log_to(snakemake.log[0]):
    write_collected(
        evaluations=[
            (experiment, seed, path)
            for (experiment, seed), path in zip(
                snakemake.params.runs, snakemake.input.csvs, strict=True
            )
        ],
        per_case_path=snakemake.output.per_case,
        per_run_path=snakemake.output.per_run,
    )
