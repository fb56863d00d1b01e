from tumorfab.log import log_to
from tumorfab.segmentation.predict import predict

if __name__ == "__main__":
    with log_to(snakemake.log[0]):
        predict(
            model_dir=snakemake.input.model,
            images_dir=snakemake.params.images_dir,
            out_dir=snakemake.output[0],
            modalities=snakemake.params.modalities,
            case_ids=snakemake.params.val_cases,
            device=snakemake.params.device,
            threads=snakemake.threads,
            **snakemake.params.predict,
        )
