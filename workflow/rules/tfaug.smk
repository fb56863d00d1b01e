# Synthesize: TF-Aug's coarse synthetic pairs (paper 002 §2.1), the source
# "tfaug" of tumorfab.synthesis.SOURCES. fit_tfaug_intensity learns
# I(x) = a*x + b per subregion and channel once (a small JSON) on the features of F, the
# baseline's encoder (the backward edge, see the Snakefile); generate_tfaug
# writes the source's cases and manifest at the largest size any experiment
# of tfaug or of a source derived from it needs (TF-GAN refines these pairs,
# Pix2Pix draws images for their label maps), so smaller sets are nested
# prefixes. Which channels a healthy scan has is read from its case folder;
# a channel it lacks is filled from the synthetic t1n (tumorfab.synthesis.tfaug.fill).


rule fit_tfaug_intensity:
    """(a, b) per subregion and channel by SGD on the frozen baseline encoder's features (§2.1)."""
    input:
        **STUDY.feature_extractor_input("tfaug"),
        real=STUDY.real_files(STUDY.train_cases),
        healthy=STUDY.healthy_files_preprocessed(),
    output:
        layout.intensity_fit_json("tfaug"),
    log:
        "logs/fit_tfaug_intensity/fit_tfaug_intensity.log",
    benchmark:
        layout.benchmark_tsv("fit_tfaug_intensity", "fit_tfaug_intensity")
    priority: scheduling.CRITICAL_PATH
    conda:
        "../../envs/tumorfab.yaml"
    # One core: a short job, and one of two would wait until two cores are
    # free at once, behind the one-core trainings.
    threads: 1
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=240,
    params:
        real_case_dirs=[layout.real_case_dir(case) for case in STUDY.train_cases],
        healthy_case_dirs=[layout.healthy_case_dir(s) for s in STUDY.healthy_subjects],
        modalities=MODALITIES,
        seed=STUDY.seed,
        # Only what the fit reads: a changed lesion control or mass effect does not refit (a, b).
        masks=SETTINGS.tfaug.masks,
        blur_sigma=SETTINGS.tfaug.blur_sigma,
        intensity_fit=SETTINGS.tfaug.intensity_fit,
    script:
        "../scripts/fit_tfaug_intensity.py"


rule generate_tfaug:
    """Coarse pairs x_s' = I(B(x_h, m_s)) (§2.1) with the lesion controls (docs/interpretations.md)."""
    input:
        intensity=rules.fit_tfaug_intensity.output[0],
        real_segs=[
            layout.case_file(layout.real_case_dir(case), "seg")
            for case in STUDY.train_cases
        ],
        healthy=STUDY.healthy_files_preprocessed(),
    output:
        cases=directory(layout.synthetic_cases_dir("tfaug")),
        manifest=layout.synthetic_manifest("tfaug"),
    log:
        "logs/generate_tfaug/generate_tfaug.log",
    benchmark:
        layout.benchmark_tsv("generate_tfaug", "generate_tfaug")
    priority: scheduling.CRITICAL_PATH
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        real_case_dirs=[layout.real_case_dir(case) for case in STUDY.train_cases],
        healthy_case_dirs=[layout.healthy_case_dir(s) for s in STUDY.healthy_subjects],
        # The largest n_synthetic of the experiments of tfaug and of the sources derived from it.
        n_cases=STUDY.generation_size("tfaug"),
        modalities=MODALITIES,
        seed=STUDY.seed,
        tfaug=SETTINGS.tfaug,
    script:
        "../scripts/generate_tfaug.py"
