from tumorfab.fabricate.settings import check_against_reference, reference_brain
from tumorfab.log import log_to
from tumorfab.synthesis.tfaug.generate import generate_tfaug

with log_to(snakemake.log[0]):
    cohort = snakemake.params.cohort
    # Again here: the DAG build checks only where the data were there already.
    check_against_reference([cohort], *reference_brain(snakemake.params.reference_images))
    generate_tfaug(
        real_case_dirs=snakemake.params.real_case_dirs,
        healthy_case_dirs=snakemake.params.healthy_case_dirs,
        intensity_json=snakemake.input.intensity,
        out_dir=snakemake.output.cases,
        manifest_path=snakemake.output.manifest,
        n_cases=cohort.n_cases,
        seed=cohort.seed,
        modalities=snakemake.params.modalities,
        settings=cohort.tfaug,
        given_masks=cohort.masks,
    )
