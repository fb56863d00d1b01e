# Guarded: nnU-Net may start spawn pools, whose workers re-import this script.
from tumorfab.log import log_to
from tumorfab.segmentation.train import train

if __name__ == "__main__":
    with log_to(snakemake.log[0]):
        train(
            preprocessed_root=snakemake.input.preprocessed,
            experiment=snakemake.wildcards.experiment,
            work_root=snakemake.params.work_root,
            model_dir=snakemake.output.model,
            seed=int(snakemake.wildcards.seed),
            configuration=snakemake.params.configuration,
            settings=snakemake.params.train,
            threads=snakemake.threads,
            pretrained_model=snakemake.input.get("pretrained"),
        )
