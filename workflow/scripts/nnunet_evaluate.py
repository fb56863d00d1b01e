from tumorfab.log import log_to
from tumorfab.segmentation.evaluate import evaluate

with log_to(snakemake.log[0]):
    references = dict(zip(snakemake.params.val_cases, snakemake.input.references))
    for predictions, out_csv in zip(snakemake.input.predictions, snakemake.output):
        evaluate(predictions_dir=predictions, references=references, out_csv=out_csv)
