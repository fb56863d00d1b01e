from pathlib import Path

from tumorfab.log import log_to
from tumorfab.synthesis.tfaug import generate_tfaug


def folders(files):
    """Case folders of a list of case files, in order, each once."""
    return list(dict.fromkeys(str(Path(f).parent) for f in files))


with log_to(snakemake.log[0]):
    generate_tfaug(
        real_case_dirs=folders(snakemake.input.real_segs),
        healthy_case_dirs=folders(snakemake.input.healthy),
        intensity_json=snakemake.input.intensity,
        out_dir=snakemake.output.cases,
        manifest_path=snakemake.output.manifest,
        n_cases=snakemake.params.n_cases,
        seed=snakemake.params.seed,
        modalities=snakemake.params.modalities,
        masks=snakemake.params.masks,
        blur_sigma=snakemake.params.blur_sigma,
        controls=snakemake.params.controls,
        mass_effect=snakemake.params.mass_effect,
    )
