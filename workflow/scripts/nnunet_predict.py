from pathlib import Path

from tumorfab.log import log_to
from tumorfab.segmentation.dataset import dataset_name
from tumorfab.segmentation.predict import predict

if __name__ == "__main__":
    with log_to(snakemake.log[0]):
        predict(
            model_dir=snakemake.input.model,
            images_dir=Path(snakemake.input.raw) / dataset_name(snakemake.wildcards.experiment) / "imagesTs",
            out_dir=snakemake.output[0],
            modalities=snakemake.params.modalities,
            case_ids=snakemake.params.val_cases,
            device=snakemake.params.device,
            threads=snakemake.threads,
            **snakemake.params.predict,
        )
