from tumorfab.log import log_to
from tumorfab.segmentation.evaluate import evaluate

with log_to(snakemake.log[0]):
    cases = snakemake.params.val_cases
    evaluate(
        predictions_dir=snakemake.input.predictions,
        references=dict(zip(cases, snakemake.input.references)),
        out_csv=snakemake.output[0],
    )
