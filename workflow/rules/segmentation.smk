# Segment: nnU-Net v2 experiments (paper 002 §3). Images converted once per
# case (background 0) -> one raw dataset of the real cases (links) -> one plan
# on the real training set -> each case preprocessed once, linked into every
# experiment's preprocessed dataset -> train (fold all) per experiment and
# seed, resumable -> predict the held-out cases -> evaluate (one job per
# experiment for both: all its seeds). The baseline's first-seed model is
# also F (rule feature_extractor). Every job that prepares data for nnU-Net,
# and F's training, is on the critical path (tumorfab.study.scheduling).


rule nnunet_image_real:
    input:
        [layout.case_file(layout.real_case_dir("{case}"), m) for m in MODALITIES],
        brainmask=layout.case_file(layout.real_case_dir("{case}"), "brainmask"),
    output:
        [
            layout.case_file(layout.nnunet_image_dir("real", "{case}"), m)
            for m in MODALITIES
        ],
    log:
        "logs/nnunet_image_real/{case}.log",
    priority: scheduling.CRITICAL_PATH
    group:
        "real"
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        modalities=MODALITIES,
        case_dir=lambda wildcards: layout.real_case_dir(wildcards.case),
        out_dir=lambda wildcards: layout.nnunet_image_dir("real", wildcards.case),
    script:
        "../scripts/nnunet_image_real.py"


rule nnunet_images_synthetic:
    input:
        manifest=layout.synthetic_manifest("{source}"),
    output:
        directory(layout.nnunet_image_dir("synthetic", "{source}")),
    log:
        "logs/nnunet_images_synthetic/{source}.log",
    wildcard_constraints:
        source="|".join(STUDY.synthetic_sources) or "(?!)",
    priority: scheduling.CRITICAL_PATH
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        modalities=MODALITIES,
        cases_dir=layout.synthetic_cases_dir("{source}"),
    script:
        "../scripts/nnunet_images_synthetic.py"


rule nnunet_raw_dataset:
    """The study's one raw dataset: the real cases (training with labels,
    held-out without). Training reads the preprocessed datasets only, so no
    experiment needs a raw dataset of its own."""
    input:
        real_images=[
            layout.case_file(layout.nnunet_image_dir("real", case), m)
            for case in STUDY.train_cases + STUDY.val_cases
            for m in MODALITIES
        ],
        real_segs=[
            layout.case_file(layout.real_case_dir(case), "seg")
            for case in STUDY.train_cases
        ],
    output:
        directory(layout.nnunet_raw_root()),
    log:
        "logs/nnunet_raw_dataset/nnunet_raw_dataset.log",
    priority: scheduling.CRITICAL_PATH
    localrule: True
    conda:
        "../../envs/tumorfab.yaml"
    params:
        baseline=STUDY.baseline,
        modalities=MODALITIES,
        train_cases=STUDY.train_cases,
        val_cases=STUDY.val_cases,
        real_image_root=lambda wildcards: layout.nnunet_image_dir("real"),
        real_case_root=lambda wildcards: layout.real_cases_root(),
    script:
        "../scripts/nnunet_raw_dataset.py"


rule nnunet_plan:
    input:
        raw=layout.nnunet_raw_root(),
    output:
        plans=layout.nnunet_plans(),
        fingerprint=layout.nnunet_fingerprint(),
    log:
        "logs/nnunet_plan/nnunet_plan.log",
    benchmark:
        layout.benchmark_tsv("nnunet_plan", "nnunet_plan")
    priority: scheduling.CRITICAL_PATH
    conda:
        "../../envs/tumorfab.yaml"
    # The training jobs' threads (fingerprinting runs one process per thread),
    # not more: a plan waiting for more free cores than a training holds up
    # every training.
    threads: config["segmentation"]["threads"]
    resources:
        mem_mb=config["segmentation"]["mem_mb"],
        runtime=60,
    params:
        plan=SETTINGS.segmentation.plan,
        raw_dataset=layout.nnunet_raw_dataset(STUDY.baseline),
    script:
        "../scripts/nnunet_plan.py"


rule nnunet_preprocess_real:
    input:
        plans=layout.nnunet_plans(),
        images=[
            layout.case_file(layout.nnunet_image_dir("real", case), m)
            for case in STUDY.train_cases
            for m in MODALITIES
        ],
        segs=[
            layout.case_file(layout.real_case_dir(case), "seg")
            for case in STUDY.train_cases
        ],
    output:
        directory(layout.nnunet_preprocessed_dir("real")),
    log:
        "logs/nnunet_preprocess_real/nnunet_preprocess_real.log",
    benchmark:
        layout.benchmark_tsv("nnunet_preprocess_real", "nnunet_preprocess_real")
    priority: scheduling.CRITICAL_PATH
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        modalities=MODALITIES,
        cases=STUDY.train_cases,
        configuration=NNUNET_CONFIGURATION,
        image_root=lambda wildcards: layout.nnunet_image_dir("real"),
        case_root=lambda wildcards: layout.real_cases_root(),
    script:
        "../scripts/nnunet_preprocess_real.py"


rule nnunet_preprocess_synthetic:
    input:
        plans=layout.nnunet_plans(),
        manifest=layout.synthetic_manifest("{source}"),
        images=layout.nnunet_image_dir("synthetic", "{source}"),
    output:
        directory(layout.nnunet_preprocessed_dir("synthetic", "{source}")),
    log:
        "logs/nnunet_preprocess_synthetic/{source}.log",
    benchmark:
        layout.benchmark_tsv("nnunet_preprocess_synthetic", "{source}")
    wildcard_constraints:
        source="|".join(STUDY.synthetic_sources) or "(?!)",
    priority: scheduling.CRITICAL_PATH
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=180,
    params:
        modalities=MODALITIES,
        configuration=NNUNET_CONFIGURATION,
        cases_dir=layout.synthetic_cases_dir("{source}"),
    script:
        "../scripts/nnunet_preprocess_synthetic.py"


rule nnunet_preprocessed_dataset:
    input:
        unpack(get_experiment_synthetic_inputs),
        plans=layout.nnunet_plans(),
        fingerprint=layout.nnunet_fingerprint(),
        real_preprocessed=layout.nnunet_preprocessed_dir("real"),
    output:
        directory(layout.nnunet_root("{experiment}", "nnUNet_preprocessed")),
    log:
        "logs/nnunet_preprocessed_dataset/{experiment}.log",
    priority: scheduling.CRITICAL_PATH
    localrule: True
    conda:
        "../../envs/tumorfab.yaml"
    params:
        experiment=get_experiment_spec,
        modalities=MODALITIES,
        train_cases=get_experiment_real_cases,
        configuration=NNUNET_CONFIGURATION,
    script:
        "../scripts/nnunet_preprocessed_dataset.py"


rule nnunet_train:
    """From scratch, or fine-tuned from the model named by init_from (same seed)."""
    input:
        unpack(get_pretrained_model),
        preprocessed=layout.nnunet_root("{experiment}", "nnUNet_preprocessed"),
    output:
        model=directory(layout.model_dir("{experiment}", "{seed}")),
    log:
        "logs/nnunet_train/{experiment}/seed{seed}.log",
    benchmark:
        layout.benchmark_tsv("nnunet_train", "{experiment}/seed{seed}")
    priority: get_training_priority
    conda:
        "../../envs/tumorfab.yaml"
    threads: config["segmentation"]["threads"]
    resources:
        gpu=1,
        mem_mb=config["segmentation"]["mem_mb"],
        runtime=24 * 60,
    params:
        train=SETTINGS.segmentation.train,
        configuration=NNUNET_CONFIGURATION,
        work_root=layout.nnunet_checkpoint_dir("{experiment}", "{seed}"),
    script:
        "../scripts/nnunet_train.py"


rule nnunet_predict:
    """All seeds of one experiment in one job, one model after the other: a
    job's start (importing nnU-Net) is paid once per experiment, not per seed."""
    input:
        models=[layout.model_dir("{experiment}", seed) for seed in STUDY.seeds],
        raw=layout.nnunet_raw_root(),
    output:
        [directory(layout.prediction_dir("{experiment}", seed)) for seed in STUDY.seeds],
    log:
        "logs/nnunet_predict/{experiment}.log",
    benchmark:
        layout.benchmark_tsv("nnunet_predict", "{experiment}")
    conda:
        "../../envs/tumorfab.yaml"
    threads: config["segmentation"]["threads"]
    resources:
        gpu=1,
        mem_mb=config["segmentation"]["mem_mb"],
        runtime=4 * 60,
    params:
        predict=SETTINGS.segmentation.predict,
        modalities=MODALITIES,
        val_cases=STUDY.val_cases,
        images_dir=layout.nnunet_test_images(STUDY.baseline),
    script:
        "../scripts/nnunet_predict.py"


rule nnunet_evaluate:
    """All seeds of one experiment in one job: a job's start (importing
    nnU-Net and MONAI) costs more than the metrics of a few cases."""
    input:
        predictions=[
            layout.prediction_dir("{experiment}", seed) for seed in STUDY.seeds
        ],
        references=[
            layout.case_file(layout.real_case_dir(case), "seg")
            for case in STUDY.val_cases
        ],
    output:
        [layout.evaluation_csv("{experiment}", seed) for seed in STUDY.seeds],
    log:
        "logs/nnunet_evaluate/{experiment}.log",
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=180,
    params:
        val_cases=STUDY.val_cases,
    script:
        "../scripts/nnunet_evaluate.py"


rule segmentation_all:
    input:
        STUDY.evaluation_csvs(),
    localrule: True


rule feature_extractor:
    """F, the frozen encoder of the baseline model (paper 002 §2.1): the target
    that closes the loop segment -> synthesize (see the Snakefile's header)."""
    input:
        STUDY.feature_extractor_dir,
    localrule: True
