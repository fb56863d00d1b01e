from tumorfab.fabricate.export import export_nnunet
from tumorfab.log import log_to

with log_to(snakemake.log[0]):
    export_nnunet(
        cases_dir=snakemake.input.cases,
        manifest=snakemake.input.manifest,
        raw_root=snakemake.output[0],
        dataset_id=snakemake.params.export.nnunet_dataset_id,
        name=snakemake.wildcards.cohort,
        channels=snakemake.params.modalities,
        real_case_dirs=snakemake.params.real_case_dirs,
        cohort=snakemake.wildcards.cohort,
    )
