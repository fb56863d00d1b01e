# Stage 4: nnU-Net v2 segmentation experiments (paper 002 §3; SPEC §2 items 3, 8).
# Images converted once per case (background 0) -> one raw dataset per
# experiment (links) -> one plan on the real training set -> each case
# preprocessed once, linked into every experiment -> train (fold all) per
# experiment and seed, resumable -> predict the held-out cases -> evaluate.
# Uses from common.smk: config, EXPERIMENTS, TRAIN_CASES, VAL_CASES and the
# "segmentation" section (SEG, SEEDS, SEG_DIR, nnunet_root(), model_dir(), the
# seed/experiment wildcard constraints, the get_* input functions).


rule nnunet_image_real:
    input:
        images=expand(
            "results/preprocess/real/{{case}}/{modality}.nii.gz",
            modality=SEG_MODALITIES,
        ),
        brainmask="results/preprocess/real/{case}/brainmask.nii.gz",
    output:
        expand(
            f"{SEG_DIR}/images/real/{{{{case}}}}/{{modality}}.nii.gz",
            modality=SEG_MODALITIES,
        ),
    log:
        "logs/nnunet_image_real/{case}.log",
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        modalities=SEG_MODALITIES,
    script:
        "../scripts/nnunet_image_real.py"


rule nnunet_images_synthetic:
    input:
        manifest="results/synthetic/{source}/manifest.csv",
    output:
        directory(f"{SEG_DIR}/images/synthetic/{{source}}"),
    log:
        "logs/nnunet_images_synthetic/{source}.log",
    wildcard_constraints:
        source="|".join(SYNTHETIC_SOURCES) or "(?!)",
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        modalities=SEG_MODALITIES,
        cases_dir="results/synthetic/{source}/cases",
    script:
        "../scripts/nnunet_images_synthetic.py"


rule nnunet_raw_dataset:
    input:
        unpack(lambda wildcards: get_experiment_synthetic_inputs(wildcards, "images")),
        real_images=expand(
            f"{SEG_DIR}/images/real/{{case}}/{{modality}}.nii.gz",
            case=TRAIN_CASES + VAL_CASES,
            modality=SEG_MODALITIES,
        ),
        real_segs=expand("results/preprocess/real/{case}/seg.nii.gz", case=TRAIN_CASES),
    output:
        directory(nnunet_root("{experiment}", "nnUNet_raw")),
    log:
        "logs/nnunet_raw_dataset/{experiment}.log",
    localrule: True
    conda:
        "../../envs/tumorfab.yaml"
    params:
        experiment=get_experiment_spec,
        modalities=SEG_MODALITIES,
        train_cases=TRAIN_CASES,
        val_cases=VAL_CASES,
        real_image_root=lambda wildcards, input: case_root_of(input.real_images),
        real_case_root=lambda wildcards, input: case_root_of(input.real_segs),
        synthetic_cases_root=lambda wildcards: (
            f"results/synthetic/{EXPERIMENTS[wildcards.experiment]['source']}/cases"
        ),
    script:
        "../scripts/nnunet_raw_dataset.py"


rule nnunet_plan:
    input:
        raw=nnunet_root(BASELINE_EXPERIMENT, "nnUNet_raw"),
    output:
        plans=f"{SEG_DIR}/plans/tumorfabPlans.json",
        fingerprint=f"{SEG_DIR}/plans/dataset_fingerprint.json",
    log:
        "logs/nnunet_plan/nnunet_plan.log",
    benchmark:
        "results/benchmarks/nnunet_plan/nnunet_plan.tsv"
    conda:
        "../../envs/tumorfab.yaml"
    threads: 2
    resources:
        mem_mb=SEG["mem_mb"],
        runtime=60,
    params:
        plan=SEG["plan"],
        baseline=BASELINE_EXPERIMENT,
    script:
        "../scripts/nnunet_plan.py"


rule nnunet_preprocess_real:
    input:
        plans=f"{SEG_DIR}/plans/tumorfabPlans.json",
        images=expand(
            f"{SEG_DIR}/images/real/{{case}}/{{modality}}.nii.gz",
            case=TRAIN_CASES,
            modality=SEG_MODALITIES,
        ),
        segs=expand("results/preprocess/real/{case}/seg.nii.gz", case=TRAIN_CASES),
    output:
        directory(f"{SEG_DIR}/preprocessed/real"),
    log:
        "logs/nnunet_preprocess_real/nnunet_preprocess_real.log",
    benchmark:
        "results/benchmarks/nnunet_preprocess_real/nnunet_preprocess_real.tsv"
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        modalities=SEG_MODALITIES,
        cases=TRAIN_CASES,
        configuration=SEG_CONFIGURATION,
        image_root=lambda wildcards, input: case_root_of(input.images),
        case_root=lambda wildcards, input: case_root_of(input.segs),
    script:
        "../scripts/nnunet_preprocess_real.py"


rule nnunet_preprocess_synthetic:
    input:
        plans=f"{SEG_DIR}/plans/tumorfabPlans.json",
        manifest="results/synthetic/{source}/manifest.csv",
        images=f"{SEG_DIR}/images/synthetic/{{source}}",
    output:
        directory(f"{SEG_DIR}/preprocessed/synthetic/{{source}}"),
    log:
        "logs/nnunet_preprocess_synthetic/{source}.log",
    benchmark:
        "results/benchmarks/nnunet_preprocess_synthetic/{source}.tsv"
    wildcard_constraints:
        source="|".join(SYNTHETIC_SOURCES) or "(?!)",
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=180,
    params:
        modalities=SEG_MODALITIES,
        configuration=SEG_CONFIGURATION,
        cases_dir="results/synthetic/{source}/cases",
    script:
        "../scripts/nnunet_preprocess_synthetic.py"


rule nnunet_preprocessed_dataset:
    input:
        unpack(
            lambda wildcards: get_experiment_synthetic_inputs(
                wildcards, "preprocessed"
            )
        ),
        plans=f"{SEG_DIR}/plans/tumorfabPlans.json",
        fingerprint=f"{SEG_DIR}/plans/dataset_fingerprint.json",
        real_preprocessed=f"{SEG_DIR}/preprocessed/real",
    output:
        directory(nnunet_root("{experiment}", "nnUNet_preprocessed")),
    log:
        "logs/nnunet_preprocessed_dataset/{experiment}.log",
    localrule: True
    conda:
        "../../envs/tumorfab.yaml"
    params:
        experiment=get_experiment_spec,
        modalities=SEG_MODALITIES,
        train_cases=TRAIN_CASES,
        configuration=SEG_CONFIGURATION,
    script:
        "../scripts/nnunet_preprocessed_dataset.py"


rule nnunet_train:
    input:
        preprocessed=nnunet_root("{experiment}", "nnUNet_preprocessed"),
    output:
        model=directory(model_dir("{experiment}", "{seed}")),
    log:
        "logs/nnunet_train/{experiment}/seed{seed}.log",
    benchmark:
        "results/benchmarks/nnunet_train/{experiment}/seed{seed}.tsv"
    conda:
        "../../envs/tumorfab.yaml"
    threads: SEG["threads"]
    resources:
        gpu=1,
        mem_mb=SEG["mem_mb"],
        runtime=24 * 60,
    params:
        train=SEG["train"],
        configuration=SEG_CONFIGURATION,
        # checkpoints and nnU-Net's logs: outside the declared output, so that a
        # killed job's rerun resumes from them (Snakemake deletes failed outputs)
        work_root=lambda wildcards: f"{nnunet_root(wildcards.experiment, 'nnUNet_results')}/seed{wildcards.seed}",
    script:
        "../scripts/nnunet_train.py"


rule nnunet_predict:
    input:
        model=model_dir("{experiment}", "{seed}"),
        raw=nnunet_root("{experiment}", "nnUNet_raw"),
    output:
        directory(f"{SEG_DIR}/predictions/{{experiment}}/seed{{seed}}"),
    log:
        "logs/nnunet_predict/{experiment}/seed{seed}.log",
    benchmark:
        "results/benchmarks/nnunet_predict/{experiment}/seed{seed}.tsv"
    conda:
        "../../envs/tumorfab.yaml"
    threads: SEG["threads"]
    resources:
        gpu=1,
        mem_mb=SEG["mem_mb"],
        runtime=4 * 60,
    params:
        predict=SEG["predict"],
        device=SEG["train"]["device"],
        modalities=SEG_MODALITIES,
        val_cases=VAL_CASES,
    script:
        "../scripts/nnunet_predict.py"


rule nnunet_evaluate:
    input:
        predictions=f"{SEG_DIR}/predictions/{{experiment}}/seed{{seed}}",
        references=expand("results/preprocess/real/{case}/seg.nii.gz", case=VAL_CASES),
    output:
        f"{SEG_DIR}/evaluation/{{experiment}}/seed{{seed}}/per_case.csv",
    log:
        "logs/nnunet_evaluate/{experiment}/seed{seed}.log",
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        val_cases=VAL_CASES,
    script:
        "../scripts/nnunet_evaluate.py"


rule segmentation_all:
    input:
        get_evaluation_csvs(),
    localrule: True
