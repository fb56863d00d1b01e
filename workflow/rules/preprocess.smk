# Stage 2: skull stripping, registration to a real reference, and intensity
# normalization to [-1, 1] of healthy scans; the same normalization of real cases.
# Scheduling: the real cases have CRITICAL_PATH_PRIORITY, the healthy scans
# HEALTHY_SCANS_PRIORITY (paths.smk). F's training waits for the real cases,
# TF-Aug's fit for F and every healthy scan, and more than half of the
# trainings wait for TF-Aug; a healthy scan left behind the first trainings
# would hold all of them up.


rule normalize_real:
    input:
        unpack(get_raw_case_images),
        seg=get_raw_case_seg,
        manifest=PREPARED_CASES,
    output:
        images=[
            case_file(real_case_dir("{case}"), m) for m in config["data"]["modalities"]
        ],
        brainmask=case_file(real_case_dir("{case}"), "brainmask"),
        seg=case_file(real_case_dir("{case}"), "seg"),
        qc=report(
            qc_png("real", "{case}"),
            category="QC",
            subcategory="Real cases",
            labels={"case": "{case}"},
        ),
    log:
        "logs/normalize_real/{case}.log",
    priority: CRITICAL_PATH_PRIORITY
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
        case_dir=real_case_dir("{case}"),
    script:
        "../scripts/normalize_real.py"


rule skullstrip_healthy:
    input:
        image=get_raw_healthy,
        manifest=PREPARED_HEALTHY,
    output:
        image=case_file(stripped_dir("{subject}"), "t1n"),
        brainmask=case_file(stripped_dir("{subject}"), "brainmask"),
        qc=report(
            qc_png("skullstrip", "{subject}"),
            category="QC",
            subcategory="Skull stripping",
            labels={"subject": "{subject}"},
        ),
    log:
        "logs/skullstrip_healthy/{subject}.log",
    benchmark:
        "results/benchmarks/skullstrip_healthy/{subject}.tsv"
    priority: HEALTHY_SCANS_PRIORITY
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
        # A refused mask's picture goes beside the log, which stays on failure.
        failure_qc="logs/skullstrip_healthy/{subject}.png",
    script:
        "../scripts/skullstrip_healthy.py"


rule register_healthy:
    input:
        image=case_file(stripped_dir("{subject}"), "t1n"),
        brainmask=case_file(stripped_dir("{subject}"), "brainmask"),
        manifest=PREPARED_CASES,
        reference_image=REFERENCE_FILES["image"],
        reference_seg=REFERENCE_FILES["seg"],
    output:
        image=case_file(registered_dir("{subject}"), "t1n"),
        brainmask=case_file(registered_dir("{subject}"), "brainmask"),
        similarity=f"{registered_dir('{subject}')}/similarity.csv",
        qc=report(
            qc_png("registration", "{subject}"),
            category="QC",
            subcategory="Registration onto the reference",
            labels={"subject": "{subject}"},
        ),
    log:
        "logs/register_healthy/{subject}.log",
    benchmark:
        "results/benchmarks/register_healthy/{subject}.tsv"
    priority: HEALTHY_SCANS_PRIORITY
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
        image=case_file(registered_dir("{subject}"), "t1n"),
        brainmask=case_file(registered_dir("{subject}"), "brainmask"),
        reference_brainmask=case_file(real_case_dir(REFERENCE_CASE), "brainmask"),
    output:
        image=case_file(healthy_case_dir("{subject}"), "t1n"),
        brainmask=case_file(healthy_case_dir("{subject}"), "brainmask"),
        qc=report(
            qc_png("healthy", "{subject}"),
            category="QC",
            subcategory="Healthy scans on the reference grid",
            labels={"subject": "{subject}"},
        ),
    log:
        "logs/normalize_healthy/{subject}.log",
    priority: HEALTHY_SCANS_PRIORITY
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=10,
    params:
        normalize=config["normalize"],
        case_dir=healthy_case_dir("{subject}"),
    script:
        "../scripts/normalize_healthy.py"


rule registration_table:
    input:
        [f"{registered_dir(s)}/similarity.csv" for s in HEALTHY_SUBJECTS],
    output:
        report(
            REGISTRATION_TABLE,
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
        REGISTRATION_TABLE,
    localrule: True
