from tumorfab.prepare.cases import brats_case_files
from tumorfab.log import log_to
from tumorfab.prepare.validate import prepare_manifests

with log_to(snakemake.log[0]):
    data = snakemake.params.data
    prepare_manifests(
        cases=[
            brats_case_files(data["brats_root"], case, data["modalities"])
            for case in snakemake.params.split
        ],
        split=snakemake.params.split,
        healthy=snakemake.params.healthy,
        remap_label_4_to_3=data["remap_label_4_to_3"],
        out_cases=snakemake.output.cases,
        out_healthy=snakemake.output.healthy,
    )
