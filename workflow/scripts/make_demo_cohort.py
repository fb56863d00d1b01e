from tumorfab.demo.cohort import make_demo_cohort
from tumorfab.log import log_to

with log_to(snakemake.log[0]):
    demo = snakemake.params.demo
    make_demo_cohort(
        snakemake.params.data["brats_root"],
        snakemake.params.data["healthy_root"],
        n_patients=demo["n_patients"],
        n_second_timepoint=demo["n_second_timepoint"],
        n_healthy=demo["n_healthy"],
        voxel_mm=demo["voxel_mm"],
        seed=snakemake.params.seed,
        modalities=snakemake.params.data["modalities"],
        healthy_sequences=snakemake.params.data["healthy_sequences"],
    )
