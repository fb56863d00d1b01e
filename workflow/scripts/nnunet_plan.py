# nnU-Net's fingerprint extraction uses a spawn pool: its workers re-import
# this script, so the work runs only under the __main__ guard.
from tumorfab.log import log_to
from tumorfab.segmentation.plans import plan_experiment

if __name__ == "__main__":
    with log_to(snakemake.log[0]):
        plan_experiment(
            raw_dataset_dir=snakemake.params.raw_dataset,
            out_plans=snakemake.output.plans,
            out_fingerprint=snakemake.output.fingerprint,
            plan=snakemake.params.plan,
            num_processes=snakemake.threads,
        )
