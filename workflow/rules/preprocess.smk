# Stage 2: skull stripping, registration to a real reference, and intensity
# normalization to [-1, 1] of healthy scans; the same normalization of real cases.


rule normalize_real:
    input:
        unpack(get_raw_case_images),
        seg=get_raw_case_seg,
        manifest="results/prepare/cases.csv",
    output:
        images=expand(
            "results/preprocess/real/{{case}}/{modality}.nii.gz",
            modality=config["data"]["modalities"],
        ),
        brainmask="results/preprocess/real/{case}/brainmask.nii.gz",
        seg="results/preprocess/real/{case}/seg.nii.gz",
        qc=report(
            "results/qc/real/{case}.png",
            category="QC",
            subcategory="Real cases",
            labels={"case": "{case}"},
        ),
    log:
        "logs/normalize_real/{case}.log",
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=10,
    params:
        modalities=config["data"]["modalities"],
        normalize=config["normalize"],
        remap_label_4_to_3=config["data"]["remap_label_4_to_3"],
    script:
        "../scripts/normalize_real.py"


rule skullstrip_healthy:
    input:
        image=get_raw_healthy,
        manifest="results/prepare/healthy.csv",
    output:
        image="results/preprocess/stripped/{subject}/t1n.nii.gz",
        brainmask="results/preprocess/stripped/{subject}/brainmask.nii.gz",
        qc=report(
            "results/qc/skullstrip/{subject}.png",
            category="QC",
            subcategory="Skull stripping",
            labels={"subject": "{subject}"},
        ),
    log:
        "logs/skullstrip_healthy/{subject}.log",
    benchmark:
        "results/benchmarks/skullstrip_healthy/{subject}.tsv"
    conda:
        "../../envs/tumorfab.yaml"
    # ANTs (the atlas method) runs on one thread, so that its result is
    # byte-identical from run to run (tumorfab.preprocess.ants.deterministic_ants).
    threads: 2 if config["skullstrip"]["synthstrip_weights"] else 1
    resources:
        # SynthStrip runs on a GPU when one is there; the atlas method is CPU-only.
        gpu=1 if config["skullstrip"]["synthstrip_weights"] else 0,
        mem_mb=8000,
        runtime=60,
    params:
        skullstrip=config["skullstrip"],
        seed=config["seed"],
    script:
        "../scripts/skullstrip_healthy.py"


rule register_healthy:
    input:
        image="results/preprocess/stripped/{subject}/t1n.nii.gz",
        brainmask="results/preprocess/stripped/{subject}/brainmask.nii.gz",
        manifest="results/prepare/cases.csv",
        reference_image=REFERENCE_FILES["image"],
        reference_seg=REFERENCE_FILES["seg"],
    output:
        image="results/preprocess/registered/{subject}/t1n.nii.gz",
        brainmask="results/preprocess/registered/{subject}/brainmask.nii.gz",
        similarity="results/preprocess/registered/{subject}/similarity.csv",
        qc=report(
            "results/qc/registration/{subject}.png",
            category="QC",
            subcategory="Registration onto the reference",
            labels={"subject": "{subject}"},
        ),
    log:
        "logs/register_healthy/{subject}.log",
    benchmark:
        "results/benchmarks/register_healthy/{subject}.tsv"
    conda:
        "../../envs/tumorfab.yaml"
    # One thread: a byte-identical result (tumorfab.preprocess.ants.deterministic_ants).
    threads: 1
    resources:
        mem_mb=6000,
        runtime=60,
    params:
        registration={
            k: v for k, v in config["registration"].items() if k != "reference_case"
        },
        reference_case=REFERENCE_CASE,
        seed=config["seed"],
    script:
        "../scripts/register_healthy.py"


rule normalize_healthy:
    input:
        image="results/preprocess/registered/{subject}/t1n.nii.gz",
        brainmask="results/preprocess/registered/{subject}/brainmask.nii.gz",
        reference_brainmask=f"{real_case_dir(REFERENCE_CASE)}/brainmask.nii.gz",
    output:
        image="results/preprocess/healthy/{subject}/t1n.nii.gz",
        brainmask="results/preprocess/healthy/{subject}/brainmask.nii.gz",
        qc=report(
            "results/qc/healthy/{subject}.png",
            category="QC",
            subcategory="Healthy scans on the reference grid",
            labels={"subject": "{subject}"},
        ),
    log:
        "logs/normalize_healthy/{subject}.log",
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=10,
    params:
        normalize=config["normalize"],
    script:
        "../scripts/normalize_healthy.py"


rule registration_table:
    input:
        expand(
            "results/preprocess/registered/{subject}/similarity.csv",
            subject=HEALTHY_SUBJECTS,
        ),
    output:
        report(
            "results/preprocess/registration.csv",
            category="QC",
            caption="../report/registration.rst",
        ),
    log:
        "logs/registration_table/registration_table.log",
    localrule: True
    conda:
        "../../envs/tumorfab.yaml"
    script:
        "../scripts/registration_table.py"


rule preprocess_all:
    input:
        [f for case in CASES for f in real_case_files(case)],
        [f for subject in HEALTHY_SUBJECTS for f in healthy_case_files(subject)],
        "results/preprocess/registration.csv",
    localrule: True
