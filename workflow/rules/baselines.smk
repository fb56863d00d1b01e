# Stage 7 (SPEC §2 item 7): comparison methods, written in the same format as
# TF's synthetic cases: results/synthetic/{source}/cases/{syn_id}/ + manifest.csv.

from snakemake.exceptions import WorkflowError

from tumorfab.synthesis.manifest import synthetic_size
from tumorfab.synthesis.carvemix import check_lambda_range

# low <= high is beyond the JSON schema: checked here, before any job runs.
try:
    check_lambda_range(config["carvemix"]["lambda_range"])
except ValueError as error:
    raise WorkflowError(f"Invalid configuration: {error}") from None


rule generate_carvemix:
    """CarveMix (Zhang et al. 2023; paper 002 §3.2.1, Table 1) from the real
    training cases only, at the largest size any carvemix experiment needs."""
    input:
        images=expand(
            "results/preprocess/real/{case}/{modality}.nii.gz",
            case=TRAIN_CASES,
            modality=config["data"]["modalities"],
        ),
        brainmasks=expand(
            "results/preprocess/real/{case}/brainmask.nii.gz", case=TRAIN_CASES
        ),
        segs=expand("results/preprocess/real/{case}/seg.nii.gz", case=TRAIN_CASES),
    output:
        cases=directory("results/synthetic/carvemix/cases"),
        manifest="results/synthetic/carvemix/manifest.csv",
    log:
        "logs/generate_carvemix/carvemix.log",
    benchmark:
        "results/benchmarks/generate_carvemix/carvemix.tsv"
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=120,
    params:
        carvemix=config["carvemix"],
        modalities=config["data"]["modalities"],
        n_cases=synthetic_size(config["experiments"], "carvemix"),
        seed=config["seed"],
    script:
        "../scripts/generate_carvemix.py"
