# Stage 4, segment: nnU-Net v2 experiments (paper 002 §3; SPEC §2 items 3, 8).
# Images converted once per case (background 0) -> one raw dataset of the real
# cases (links) -> one plan on the real training set -> each case preprocessed
# once, linked into every experiment's preprocessed dataset -> train (fold
# all) per experiment and seed, resumable -> predict the held-out cases ->
# evaluate (one job per experiment for both: all its seeds). The baseline's
# first-seed model is also F (rule feature_extractor).
# Uses from common.smk: config, EXPERIMENTS, TRAIN_CASES, VAL_CASES, SEEDS,
# the paths (paths.smk), the "segmentation" section (SEG, SEG_MODALITIES,
# SEG_CONFIGURATION, the get_* input functions).
# Scheduling: every job that prepares data for nnU-Net, and F's training, has
# CRITICAL_PATH_PRIORITY (paths.smk): trainings wait for them, never the
# reverse, so F and the synthetic sources' datasets are ready as early as
# possible.


rule nnunet_image_real:
    input:
        [case_file(real_case_dir("{case}"), m) for m in SEG_MODALITIES],
        brainmask=case_file(real_case_dir("{case}"), "brainmask"),
    output:
        [case_file(nnunet_image_dir("real", "{case}"), m) for m in SEG_MODALITIES],
    log:
        "logs/nnunet_image_real/{case}.log",
    priority: CRITICAL_PATH_PRIORITY
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        modalities=SEG_MODALITIES,
        case_dir=lambda wildcards: real_case_dir(wildcards.case),
        out_dir=lambda wildcards: nnunet_image_dir("real", wildcards.case),
    script:
        "../scripts/nnunet_image_real.py"


rule nnunet_images_synthetic:
    input:
        manifest=synthetic_manifest("{source}"),
    output:
        directory(nnunet_image_dir("synthetic", "{source}")),
    log:
        "logs/nnunet_images_synthetic/{source}.log",
    wildcard_constraints:
        source="|".join(SYNTHETIC_SOURCES) or "(?!)",
    priority: CRITICAL_PATH_PRIORITY
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        modalities=SEG_MODALITIES,
        cases_dir=synthetic_cases_dir("{source}"),
    script:
        "../scripts/nnunet_images_synthetic.py"


rule nnunet_raw_dataset:
    """The study's one raw dataset: the real cases (training with labels,
    held-out without). Training reads the preprocessed datasets only, so no
    experiment needs a raw dataset of its own."""
    input:
        real_images=[
            case_file(nnunet_image_dir("real", case), m)
            for case in TRAIN_CASES + VAL_CASES
            for m in SEG_MODALITIES
        ],
        real_segs=[case_file(real_case_dir(case), "seg") for case in TRAIN_CASES],
    output:
        directory(NNUNET_RAW_ROOT),
    log:
        "logs/nnunet_raw_dataset/nnunet_raw_dataset.log",
    priority: CRITICAL_PATH_PRIORITY
    localrule: True
    conda:
        "../../envs/tumorfab.yaml"
    params:
        baseline=BASELINE_EXPERIMENT,
        modalities=SEG_MODALITIES,
        train_cases=TRAIN_CASES,
        val_cases=VAL_CASES,
        real_image_root=lambda wildcards: nnunet_image_dir("real"),
        real_case_root=lambda wildcards: REAL_CASES_ROOT,
    script:
        "../scripts/nnunet_raw_dataset.py"


rule nnunet_plan:
    input:
        raw=NNUNET_RAW_ROOT,
    output:
        plans=NNUNET_PLANS,
        fingerprint=NNUNET_FINGERPRINT,
    log:
        "logs/nnunet_plan/nnunet_plan.log",
    benchmark:
        "results/benchmarks/nnunet_plan/nnunet_plan.tsv"
    priority: CRITICAL_PATH_PRIORITY
    conda:
        "../../envs/tumorfab.yaml"
    # The training jobs' threads (fingerprinting runs one process per thread):
    # a two-thread plan on 2 cores waits until both are free at once, behind
    # one-core jobs, and holds up every training.
    threads: SEG["threads"]
    resources:
        mem_mb=SEG["mem_mb"],
        runtime=60,
    params:
        plan=SEG["plan"],
        raw_dataset=NNUNET_RAW_DATASET,
    script:
        "../scripts/nnunet_plan.py"


rule nnunet_preprocess_real:
    input:
        plans=NNUNET_PLANS,
        images=[
            case_file(nnunet_image_dir("real", case), m)
            for case in TRAIN_CASES
            for m in SEG_MODALITIES
        ],
        segs=[case_file(real_case_dir(case), "seg") for case in TRAIN_CASES],
    output:
        directory(nnunet_preprocessed_dir("real")),
    log:
        "logs/nnunet_preprocess_real/nnunet_preprocess_real.log",
    benchmark:
        "results/benchmarks/nnunet_preprocess_real/nnunet_preprocess_real.tsv"
    priority: CRITICAL_PATH_PRIORITY
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
        image_root=lambda wildcards: nnunet_image_dir("real"),
        case_root=lambda wildcards: REAL_CASES_ROOT,
    script:
        "../scripts/nnunet_preprocess_real.py"


rule nnunet_preprocess_synthetic:
    input:
        plans=NNUNET_PLANS,
        manifest=synthetic_manifest("{source}"),
        images=nnunet_image_dir("synthetic", "{source}"),
    output:
        directory(nnunet_preprocessed_dir("synthetic", "{source}")),
    log:
        "logs/nnunet_preprocess_synthetic/{source}.log",
    benchmark:
        "results/benchmarks/nnunet_preprocess_synthetic/{source}.tsv"
    wildcard_constraints:
        source="|".join(SYNTHETIC_SOURCES) or "(?!)",
    priority: CRITICAL_PATH_PRIORITY
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=180,
    params:
        modalities=SEG_MODALITIES,
        configuration=SEG_CONFIGURATION,
        cases_dir=synthetic_cases_dir("{source}"),
    script:
        "../scripts/nnunet_preprocess_synthetic.py"


rule nnunet_preprocessed_dataset:
    input:
        unpack(
            lambda wildcards: get_experiment_synthetic_inputs(
                wildcards, "preprocessed"
            )
        ),
        plans=NNUNET_PLANS,
        fingerprint=NNUNET_FINGERPRINT,
        real_preprocessed=nnunet_preprocessed_dir("real"),
    output:
        directory(nnunet_root("{experiment}", "nnUNet_preprocessed")),
    log:
        "logs/nnunet_preprocessed_dataset/{experiment}.log",
    priority: CRITICAL_PATH_PRIORITY
    localrule: True
    conda:
        "../../envs/tumorfab.yaml"
    params:
        experiment=get_experiment_spec,
        modalities=SEG_MODALITIES,
        train_cases=get_experiment_real_cases,
        configuration=SEG_CONFIGURATION,
    script:
        "../scripts/nnunet_preprocessed_dataset.py"


rule nnunet_train:
    """From scratch, or fine-tuned from the model named by init_from (same seed)."""
    input:
        unpack(get_pretrained_model),
        preprocessed=nnunet_root("{experiment}", "nnUNet_preprocessed"),
    output:
        model=directory(model_dir("{experiment}", "{seed}")),
    log:
        "logs/nnunet_train/{experiment}/seed{seed}.log",
    benchmark:
        "results/benchmarks/nnunet_train/{experiment}/seed{seed}.tsv"
    priority: training_priority
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
        work_root=nnunet_checkpoint_dir("{experiment}", "{seed}"),
    script:
        "../scripts/nnunet_train.py"


rule nnunet_predict:
    """All seeds of one experiment in one job, one model after the other: on
    the demo's CPU, starting a job (imports) costs as much as its predictions."""
    input:
        models=[model_dir("{experiment}", seed) for seed in SEEDS],
        raw=NNUNET_RAW_ROOT,
    output:
        [directory(prediction_dir("{experiment}", seed)) for seed in SEEDS],
    log:
        "logs/nnunet_predict/{experiment}.log",
    benchmark:
        "results/benchmarks/nnunet_predict/{experiment}.tsv"
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
        images_dir=f"{NNUNET_RAW_DATASET}/imagesTs",
    script:
        "../scripts/nnunet_predict.py"


rule nnunet_evaluate:
    """All seeds of one experiment in one job: the metrics take well under a
    second per demo case, the imports (nnU-Net, MONAI) ~10 s of CPU per job."""
    input:
        predictions=[prediction_dir("{experiment}", seed) for seed in SEEDS],
        references=[case_file(real_case_dir(case), "seg") for case in VAL_CASES],
    output:
        [evaluation_csv("{experiment}", seed) for seed in SEEDS],
    log:
        "logs/nnunet_evaluate/{experiment}.log",
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


rule feature_extractor:
    """F, the frozen encoder of the baseline model (SPEC §2 item 3): the target
    that closes the loop segment -> synthesize (see the Snakefile's header)."""
    input:
        FEATURE_EXTRACTOR_DIR,
    localrule: True
