# Fabricate: named synthetic cohorts (config fabricate.cohorts) from the
# study's trained pieces, which these rules read and never retrain: TF-Aug's
# fitted intensities, TF-GAN's and Pix2Pix's generators, the real training
# masks, F for the card's realism. Each cohort: its cases (the study's own
# generators with the cohort's seed and controls), its BraTS-layout and
# nnU-Net exports, its card. `snakemake fabricate` makes every cohort,
# `snakemake fabricate_<name>` one (docs/interpretations.md, "Fabricated cohorts").


wildcard_constraints:
    cohort="|".join(STUDY.cohorts) or "(?!)",


# The real cases' own intensity scale, the one every cohort's export maps back to.
rule fabricate_intensity_scale:
    """The real training cases' white-matter level per channel (median over the cases)."""
    input:
        [image for images in STUDY.train_raw_images for image in images.values()],
    output:
        layout.intensity_scale_json(),
    log:
        "logs/fabricate/intensity_scale.log",
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        cases=STUDY.train_raw_images,
        normalize=SETTINGS.normalize,
    script:
        "../scripts/fabricate_intensity_scale.py"


rule fabricate_tfaug:
    """A cohort's TF-Aug cases (its own cases for source tfaug, the layouts TF
    refines or Pix2Pix paints for tf and pix2pix): the study's generator with
    the cohort's seed, controls, mass effect or masks."""
    input:
        unpack(get_cohort_masks),
        intensity=rules.fit_tfaug_intensity.output[0],
        real_segs=[
            layout.case_file(layout.real_case_dir(case), "seg")
            for case in STUDY.train_cases
        ],
        healthy=STUDY.healthy_files_preprocessed(),
        reference=list(STUDY.reference_images.values()),
    output:
        cases=directory(layout.fabricate_cases_dir("{cohort}", "tfaug")),
        manifest=layout.fabricate_manifest("{cohort}", "tfaug"),
    log:
        "logs/fabricate/{cohort}_tfaug.log",
    benchmark:
        layout.benchmark_tsv("fabricate_tfaug", "{cohort}")
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        cohort=lambda wildcards: STUDY.cohorts[wildcards.cohort],
        real_case_dirs=[layout.real_case_dir(case) for case in STUDY.train_cases],
        healthy_case_dirs=[layout.healthy_case_dir(s) for s in STUDY.healthy_subjects],
        reference_images=STUDY.reference_images,
        modalities=MODALITIES,
    script:
        "../scripts/fabricate_tfaug.py"


rule fabricate_tf:
    """A tf cohort: its TF-Aug cases refined by the study's TF-GAN generator."""
    input:
        generator=rules.train_tfgan.output.generator,
        coarse_cases=layout.fabricate_cases_dir("{cohort}", "tfaug"),
        coarse_manifest=layout.fabricate_manifest("{cohort}", "tfaug"),
    output:
        cases=directory(layout.fabricate_cases_dir("{cohort}", "tf")),
        manifest=layout.fabricate_manifest("{cohort}", "tf"),
    log:
        "logs/fabricate/{cohort}_tf.log",
    benchmark:
        layout.benchmark_tsv("fabricate_tf", "{cohort}")
    conda:
        "../../envs/tumorfab.yaml"
    threads: config["tfgan"]["threads"]
    resources:
        gpu=1,
        mem_mb=config["tfgan"]["mem_mb"],
        runtime=24 * 60,
    params:
        n_cases=lambda wildcards: STUDY.cohorts[wildcards.cohort].n_cases,
        modalities=MODALITIES,
        seed=lambda wildcards: STUDY.cohorts[wildcards.cohort].seed,
        tfgan=SETTINGS.tfgan,
    script:
        "../scripts/generate_tf.py"


rule fabricate_pix2pix:
    """A pix2pix cohort: an image for each of its TF-Aug label maps."""
    input:
        generator=rules.train_pix2pix.output.generator,
        layout_cases=layout.fabricate_cases_dir("{cohort}", "tfaug"),
        layout_manifest=layout.fabricate_manifest("{cohort}", "tfaug"),
    output:
        cases=directory(layout.fabricate_cases_dir("{cohort}", "pix2pix")),
        manifest=layout.fabricate_manifest("{cohort}", "pix2pix"),
    log:
        "logs/fabricate/{cohort}_pix2pix.log",
    benchmark:
        layout.benchmark_tsv("fabricate_pix2pix", "{cohort}")
    conda:
        "../../envs/tumorfab.yaml"
    threads: config["pix2pix"]["threads"]
    resources:
        gpu=1,
        mem_mb=config["pix2pix"]["mem_mb"],
        runtime=24 * 60,
    params:
        n_cases=lambda wildcards: STUDY.cohorts[wildcards.cohort].n_cases,
        modalities=MODALITIES,
        seed=lambda wildcards: STUDY.cohorts[wildcards.cohort].seed,
        pix2pix=SETTINGS.pix2pix,
    script:
        "../scripts/generate_pix2pix.py"


rule fabricate_carvemix:
    """A carvemix cohort: CarveMix of the real training cases, with the cohort's seed."""
    input:
        STUDY.real_files(STUDY.train_cases),
    output:
        cases=directory(layout.fabricate_cases_dir("{cohort}", "carvemix")),
        manifest=layout.fabricate_manifest("{cohort}", "carvemix"),
    log:
        "logs/fabricate/{cohort}_carvemix.log",
    benchmark:
        layout.benchmark_tsv("fabricate_carvemix", "{cohort}")
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=120,
    params:
        train_case_dirs={case: layout.real_case_dir(case) for case in STUDY.train_cases},
        carvemix=SETTINGS.carvemix,
        modalities=MODALITIES,
        n_cases=lambda wildcards: STUDY.cohorts[wildcards.cohort].n_cases,
        seed=lambda wildcards: STUDY.cohorts[wildcards.cohort].seed,
    script:
        "../scripts/generate_carvemix.py"


rule fabricate_export_brats:
    """The cohort in BraTS layout, on the real cases' intensity scale."""
    input:
        unpack(get_cohort_cases),
        scale=layout.intensity_scale_json(),
        reference=STUDY.reference_images[layout.HEALTHY_CHANNEL],
    output:
        directory(layout.fabricate_brats_dir("{cohort}")),
    log:
        "logs/fabricate/{cohort}_export_brats.log",
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=60,
    params:
        prefix=lambda wildcards: STUDY.cohorts[wildcards.cohort].export.brats_prefix,
        modalities=MODALITIES,
    script:
        "../scripts/fabricate_export_brats.py"


rule fabricate_export_nnunet:
    """The cohort as an nnU-Net raw dataset (with the real training cases if asked)."""
    input:
        unpack(get_cohort_cases),
        real=get_cohort_real_files,
    output:
        directory(layout.fabricate_nnunet_raw("{cohort}")),
    log:
        "logs/fabricate/{cohort}_export_nnunet.log",
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=60,
    params:
        export=lambda wildcards: STUDY.cohorts[wildcards.cohort].export,
        real_case_dirs=get_cohort_real_case_dirs,
        modalities=MODALITIES,
    script:
        "../scripts/fabricate_export_nnunet.py"


rule fabricate_card:
    """The cohort's card: what made it, requested against measured lesions, realism, mosaic."""
    input:
        unpack(get_cohort_cases),
        unpack(get_cohort_models),
        unpack(get_cohort_layouts),
        feature_extractor=STUDY.feature_extractor_dir,
        real=STUDY.real_files(STUDY.train_cases),
    output:
        md=report(
            layout.fabricate_card("{cohort}", "md"),
            category="Fabricated cohorts",
            labels={"cohort": "{cohort}", "file": "card"},
        ),
        json=layout.fabricate_card("{cohort}", "json"),
        histograms=report(
            layout.fabricate_figure("{cohort}", "lesion_histograms"),
            category="Fabricated cohorts",
            labels={"cohort": "{cohort}", "file": "lesion histograms"},
        ),
        mosaic=report(
            layout.fabricate_figure("{cohort}", "mosaic"),
            category="Fabricated cohorts",
            labels={"cohort": "{cohort}", "file": "mosaic"},
        ),
    log:
        "logs/fabricate/{cohort}_card.log",
    benchmark:
        layout.benchmark_tsv("fabricate_card", "{cohort}")
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    params:
        cohort=lambda wildcards: STUDY.cohorts[wildcards.cohort],
        command=get_cohort_command,
        real_case_dirs=[layout.real_case_dir(case) for case in STUDY.train_cases],
        healthy_case_dirs={
            s: layout.healthy_case_dir(s) for s in STUDY.healthy_subjects
        },
        n_stages=SETTINGS.tfaug.intensity_fit.n_stages,
        modalities=MODALITIES,
    script:
        "../scripts/fabricate_card.py"


for _cohort in STUDY.cohorts:

    rule:
        name:
            f"fabricate_{_cohort}"
        input:
            layout.fabricate_card(_cohort, "md"),
            layout.fabricate_brats_dir(_cohort),
            layout.fabricate_nnunet_raw(_cohort),


rule fabricate:
    """Every cohort of fabricate.cohorts: cases, exports and card."""
    input:
        [
            path
            for cohort in STUDY.cohorts
            for path in (
                layout.fabricate_card(cohort, "md"),
                layout.fabricate_brats_dir(cohort),
                layout.fabricate_nnunet_raw(cohort),
            )
        ],
