# Stage 3, synthesize: TF-Aug coarse synthetic pairs (SPEC §2 item 4; paper
# 002 §2.1), the source "tfaug" of tumorfab.synthesis.SOURCES.
# fit_tfaug_intensity learns I(x) = a*x + b per subregion once (a small JSON)
# on the features of F, the baseline's encoder (the backward edge, see the
# Snakefile); generate_tfaug writes synthetic_cases_dir + synthetic_manifest at
# the largest size any experiment of tfaug or of a source derived from it
# needs (TF-GAN refines these pairs, Pix2Pix draws images for their label
# maps), so smaller sets are nested prefixes.


rule fit_tfaug_intensity:
    """(a, b) per subregion by SGD on the frozen baseline encoder's features (§2.1)."""
    input:
        real=[f for case in TRAIN_CASES for f in real_case_files(case)],
        healthy=[f for subject in HEALTHY_SUBJECTS for f in healthy_case_files(subject)],
        feature_extractor=FEATURE_EXTRACTOR_DIR,
    output:
        f"{synthetic_dir('tfaug')}/intensity.json",
    log:
        "logs/fit_tfaug_intensity/fit_tfaug_intensity.log",
    benchmark:
        "results/benchmarks/fit_tfaug_intensity/fit_tfaug_intensity.tsv"
    priority: CRITICAL_PATH_PRIORITY
    conda:
        "../../envs/tumorfab.yaml"
    # One core: a job of two waits until two are free at once, behind the
    # one-core trainings (~4 min in the demo), and the fit itself is ~13 s.
    threads: 1
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=240,
    params:
        real_case_dirs=[real_case_dir(case) for case in TRAIN_CASES],
        healthy_case_dirs=[healthy_case_dir(s) for s in HEALTHY_SUBJECTS],
        modalities=config["data"]["modalities"],
        seed=config["seed"],
        masks=config["tfaug"]["masks"],
        blur_sigma=config["tfaug"]["blur_sigma"],
        intensity_fit=config["tfaug"]["intensity_fit"],
    script:
        "../scripts/fit_tfaug_intensity.py"


rule generate_tfaug:
    """Coarse pairs x_s' = I(B(x_h, m_s)) with the lesion controls (§2.1, SPEC §5)."""
    input:
        intensity=f"{synthetic_dir('tfaug')}/intensity.json",
        real_segs=[case_file(real_case_dir(case), "seg") for case in TRAIN_CASES],
        healthy=[f for subject in HEALTHY_SUBJECTS for f in healthy_case_files(subject)],
    output:
        cases=directory(synthetic_cases_dir("tfaug")),
        manifest=synthetic_manifest("tfaug"),
    log:
        "logs/generate_tfaug/generate_tfaug.log",
    benchmark:
        "results/benchmarks/generate_tfaug/generate_tfaug.tsv"
    priority: CRITICAL_PATH_PRIORITY
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        real_case_dirs=[real_case_dir(case) for case in TRAIN_CASES],
        healthy_case_dirs=[healthy_case_dir(s) for s in HEALTHY_SUBJECTS],
        # The largest n_synthetic of the experiments of tfaug and of the sources derived from it.
        n_cases=GENERATION_SIZE["tfaug"],
        modalities=config["data"]["modalities"],
        seed=config["seed"],
        masks=config["tfaug"]["masks"],
        blur_sigma=config["tfaug"]["blur_sigma"],
        controls=config["tfaug"]["controls"],
        mass_effect=config["tfaug"]["mass_effect"],
    script:
        "../scripts/generate_tfaug.py"
