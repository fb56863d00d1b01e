from tumorfab.log import log_to
from tumorfab.segmentation.predict import predict

if __name__ == "__main__":
    with log_to(snakemake.log[0]):
        for model, out_dir in zip(snakemake.input.models, snakemake.output):
            predict(
                model_dir=model,
                images_dir=snakemake.params.images_dir,
                out_dir=out_dir,
                modalities=snakemake.params.modalities,
                case_ids=snakemake.params.val_cases,
                settings=snakemake.params.predict,
                threads=snakemake.threads,
            )
