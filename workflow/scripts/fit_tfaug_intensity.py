from pathlib import Path

from tumorfab.log import log_to
from tumorfab.synthesis.tfaug import fit_tfaug_intensity


def folders(files):
    """Case folders of a list of case files, in order, each once."""
    return list(dict.fromkeys(str(Path(f).parent) for f in files))


with log_to(snakemake.log[0]):
    fit_tfaug_intensity(
        real_case_dirs=folders(snakemake.input.real),
        healthy_case_dirs=folders(snakemake.input.healthy),
        model_dir=snakemake.input.model,
        out_json=snakemake.output[0],
        modalities=snakemake.params.modalities,
        seed=snakemake.params.seed,
        masks=snakemake.params.masks,
        blur_sigma=snakemake.params.blur_sigma,
        intensity_fit=snakemake.params.intensity_fit,
    )
