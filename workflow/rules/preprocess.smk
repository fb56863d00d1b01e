# Preprocess: skull stripping, bias-field correction and registration to a
# real reference, and intensity normalization to [-1, 1] of healthy scans; the
# same normalization of real cases. The real cases are on the critical path,
# the healthy scans just below it (tumorfab.study.scheduling). A healthy
# subject's other sequences (data.healthy_sequences) follow its T1:
# co-registered rigidly to it, carried to the reference by its transforms,
# normalized in its brain mask.
# Bias-field correction (N4) is part of each healthy scan's registration job:
# on the scan's own grid, just before it is resampled onto the reference.


rule normalize_real:
    input:
        unpack(get_raw_case_images),
        seg=get_raw_case_seg,
        manifest=layout.prepared_cases(),
    output:
        images=[layout.case_file(layout.real_case_dir("{case}"), m) for m in MODALITIES],
        brainmask=layout.case_file(layout.real_case_dir("{case}"), "brainmask"),
        seg=layout.case_file(layout.real_case_dir("{case}"), "seg"),
        qc=report(
            layout.qc_png("real", "{case}"),
            category="QC",
            subcategory="Real cases",
            labels={"case": "{case}"},
        ),
    log:
        "logs/normalize_real/{case}.log",
    priority: scheduling.CRITICAL_PATH
    group:
        "real"
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=10,
    params:
        modalities=MODALITIES,
        normalize=SETTINGS.normalize,
        remap_label_4_to_3=config["data"]["remap_label_4_to_3"],
        case_dir=layout.real_case_dir("{case}"),
    script:
        "../scripts/normalize_real.py"


rule skullstrip_healthy:
    input:
        image=get_raw_healthy,
        manifest=layout.prepared_healthy(),
    output:
        image=layout.case_file(layout.stripped_dir("{subject}"), "t1n"),
        brainmask=layout.case_file(layout.stripped_dir("{subject}"), "brainmask"),
        qc=report(
            layout.qc_png("skullstrip", "{subject}"),
            category="QC",
            subcategory="Skull stripping",
            labels={"subject": "{subject}"},
        ),
    log:
        "logs/skullstrip_healthy/{subject}.log",
    benchmark:
        layout.benchmark_tsv("skullstrip_healthy", "{subject}")
    priority: scheduling.HEALTHY_SCANS
    group:
        "skullstrip"
    conda:
        "../../envs/tumorfab.yaml"
    # ANTs (the atlas method) runs on one thread, so that its result is
    # byte-identical from run to run (tumorfab.preprocess.ants.deterministic_ants).
    threads: 2 if SETTINGS.skullstrip.synthstrip_weights else 1
    resources:
        # SynthStrip runs on a GPU when one is there; the atlas method is CPU-only.
        gpu=1 if SETTINGS.skullstrip.synthstrip_weights else 0,
        mem_mb=8000,
        runtime=60,
    params:
        skullstrip=SETTINGS.skullstrip,
        seed=STUDY.seed,
        # A refused mask's picture goes beside the log, which stays on failure.
        failure_qc="logs/skullstrip_healthy/{subject}.png",
    script:
        "../scripts/skullstrip_healthy.py"


rule register_healthy:
    input:
        image=layout.case_file(layout.stripped_dir("{subject}"), "t1n"),
        brainmask=layout.case_file(layout.stripped_dir("{subject}"), "brainmask"),
        manifest=layout.prepared_cases(),
        reference_image=STUDY.reference_files["image"],
        reference_seg=STUDY.reference_files["seg"],
    output:
        **(
            {
                "transform": temp(
                    directory(layout.registration_transform_dir("{subject}"))
                )
            }
            if STUDY.has_healthy_sequences
            else {}
        ),
        image=layout.case_file(layout.registered_dir("{subject}"), "t1n"),
        brainmask=layout.case_file(layout.registered_dir("{subject}"), "brainmask"),
        similarity=layout.similarity_csv("{subject}"),
        qc=report(
            layout.qc_png("registration", "{subject}"),
            category="QC",
            subcategory="Registration onto the reference",
            labels={"subject": "{subject}"},
        ),
        # Kept until the subject's other sequences are registered with them
        # (a SyN warp is tens of MB).
    log:
        "logs/register_healthy/{subject}.log",
    benchmark:
        layout.benchmark_tsv("register_healthy", "{subject}")
    priority: scheduling.HEALTHY_SCANS
    group:
        "healthy"
    conda:
        "../../envs/tumorfab.yaml"
    # One thread: a byte-identical result (tumorfab.preprocess.ants.deterministic_ants).
    threads: 1
    resources:
        mem_mb=6000,
        runtime=60,
    params:
        registration=SETTINGS.registration,
        bias_correction=SETTINGS.bias_correction,
        reference_case=STUDY.reference_case,
        seed=STUDY.seed,
    script:
        "../scripts/register_healthy.py"


rule normalize_healthy:
    input:
        image=layout.case_file(layout.registered_dir("{subject}"), "t1n"),
        brainmask=layout.case_file(layout.registered_dir("{subject}"), "brainmask"),
        reference_brainmask=layout.case_file(
            layout.real_case_dir(STUDY.reference_case), "brainmask"
        ),
    output:
        image=layout.case_file(layout.healthy_case_dir("{subject}"), "t1n"),
        brainmask=layout.case_file(layout.healthy_case_dir("{subject}"), "brainmask"),
        qc=report(
            layout.qc_png("healthy", "{subject}"),
            category="QC",
            subcategory="Healthy scans on the reference grid",
            labels={"subject": "{subject}"},
        ),
    log:
        "logs/normalize_healthy/{subject}.log",
    priority: scheduling.HEALTHY_SCANS
    group:
        "healthy"
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=10,
    params:
        normalize=SETTINGS.normalize,
        case_dir=layout.healthy_case_dir("{subject}"),
    script:
        "../scripts/normalize_healthy.py"


if STUDY.has_healthy_sequences:

    rule coregister_healthy:
        """A subject's other sequence onto its own T1, rigidly (both raw, same head)."""
        input:
            image=get_raw_healthy_sequence,
            t1=get_raw_healthy,
            t1_brainmask=layout.case_file(layout.stripped_dir("{subject}"), "brainmask"),
            manifest=layout.prepared_healthy(),
        output:
            transform=layout.coregistration_transform("{subject}", "{channel}"),
            qc=report(
                layout.qc_png("coregistration", "{subject}_{channel}"),
                category="QC",
                subcategory="Co-registration onto the T1",
                labels={"subject": "{subject}", "channel": "{channel}"},
            ),
        log:
            "logs/coregister_healthy/{subject}_{channel}.log",
        wildcard_constraints:
            channel=HEALTHY_EXTRA_CHANNELS,
        priority: scheduling.HEALTHY_SCANS
        group:
            "healthy"
        conda:
            "../../envs/tumorfab.yaml"
        # One thread: a byte-identical result (tumorfab.preprocess.ants.deterministic_ants).
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            seed=STUDY.seed,
        script:
            "../scripts/coregister_healthy.py"

    rule register_healthy_sequence:
        """The other sequence onto the reference grid by its T1's transforms."""
        input:
            image=get_raw_healthy_sequence,
            coregistration=layout.coregistration_transform("{subject}", "{channel}"),
            # Where the sequence's bias field is fitted, carried onto its grid.
            t1_brainmask=layout.case_file(layout.stripped_dir("{subject}"), "brainmask"),
            transform=layout.registration_transform_dir("{subject}"),
            brainmask=layout.case_file(layout.registered_dir("{subject}"), "brainmask"),
        output:
            image=layout.case_file(layout.registered_dir("{subject}"), "{channel}"),
        log:
            "logs/register_healthy_sequence/{subject}_{channel}.log",
        wildcard_constraints:
            channel=HEALTHY_EXTRA_CHANNELS,
        priority: scheduling.HEALTHY_SCANS
        group:
            "healthy"
        conda:
            "../../envs/tumorfab.yaml"
        # One thread: a byte-identical result (tumorfab.preprocess.ants.deterministic_ants).
        threads: 1
        resources:
            mem_mb=4000,
            runtime=10,
        params:
            registration=SETTINGS.registration,
            bias_correction=SETTINGS.bias_correction,
            seed=STUDY.seed,
        script:
            "../scripts/register_healthy_sequence.py"

    rule normalize_healthy_sequence:
        """The other sequence into the subject's case folder, in the T1's brain mask,
        scaled by its mean in the T1's white matter."""
        input:
            image=layout.case_file(layout.registered_dir("{subject}"), "{channel}"),
            t1n=layout.case_file(layout.registered_dir("{subject}"), "t1n"),
            brainmask=layout.case_file(layout.registered_dir("{subject}"), "brainmask"),
            reference_brainmask=layout.case_file(
                layout.real_case_dir(STUDY.reference_case), "brainmask"
            ),
        output:
            image=layout.case_file(layout.healthy_case_dir("{subject}"), "{channel}"),
            qc=report(
                layout.qc_png("healthy", "{subject}_{channel}"),
                category="QC",
                subcategory="Healthy scans on the reference grid",
                labels={"subject": "{subject}", "channel": "{channel}"},
            ),
        log:
            "logs/normalize_healthy_sequence/{subject}_{channel}.log",
        wildcard_constraints:
            channel=HEALTHY_EXTRA_CHANNELS,
        priority: scheduling.HEALTHY_SCANS
        group:
            "healthy"
        conda:
            "../../envs/tumorfab.yaml"
        threads: 1
        resources:
            mem_mb=3000,
            runtime=10,
        params:
            normalize=SETTINGS.normalize,
            case_dir=layout.healthy_case_dir("{subject}"),
        script:
            "../scripts/normalize_healthy_sequence.py"


rule registration_table:
    input:
        [layout.similarity_csv(s) for s in STUDY.healthy_subjects],
    output:
        report(
            layout.registration_table(),
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
        STUDY.real_files(STUDY.cases),
        STUDY.healthy_files_preprocessed(),
        layout.registration_table(),
    localrule: True
