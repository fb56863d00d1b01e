from tumorfab.log import log_to
from tumorfab.synthesis.tfaug.intensity_fit import fit_tfaug_intensity

with log_to(snakemake.log[0]):
    fit_tfaug_intensity(
        real_case_dirs=snakemake.params.real_case_dirs,
        healthy_case_dirs=snakemake.params.healthy_case_dirs,
        model_dir=snakemake.input.feature_extractor,
        out_json=snakemake.output[0],
        modalities=snakemake.params.modalities,
        seed=snakemake.params.seed,
        masks=snakemake.params.masks,
        blur_sigma=snakemake.params.blur_sigma,
        intensity_fit=snakemake.params.intensity_fit,
    )
