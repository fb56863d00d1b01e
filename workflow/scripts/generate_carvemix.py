from pathlib import Path

from tumorfab.synthesis.carvemix import generate_carvemix
from tumorfab.log import log_to

with log_to(snakemake.log[0]):
    # Each training case's folder is the parent of its seg.nii.gz.
    case_dirs = {Path(seg).parent.name: Path(seg).parent for seg in snakemake.input.segs}
    generate_carvemix(
        train_case_dirs=case_dirs,
        out_dir=snakemake.output.cases,
        manifest_path=snakemake.output.manifest,
        n_cases=snakemake.params.n_cases,
        modalities=snakemake.params.modalities,
        lambda_range=snakemake.params.carvemix["lambda_range"],
        seed=snakemake.params.seed,
    )
