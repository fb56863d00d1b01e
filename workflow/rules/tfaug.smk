# Stage 4 (SPEC §2 item 4; paper 002 §2.1): TF-Aug coarse synthetic pairs.
# fit_tfaug_intensity learns I(x) = a*x + b per subregion once (a small JSON);
# generate_tfaug writes results/synthetic/tfaug/cases/ + manifest.csv at the
# largest size any tfaug or tf experiment needs (TF-GAN refines these pairs),
# so smaller sets are nested prefixes.

from tumorfab.synthesis.manifest import synthetic_size


rule fit_tfaug_intensity:
    """(a, b) per subregion by SGD on the frozen baseline encoder's features (§2.1)."""
    input:
        real=[f for case in TRAIN_CASES for f in real_case_files(case)],
        healthy=[f for subject in HEALTHY_SUBJECTS for f in healthy_case_files(subject)],
        model=lambda wildcards: get_feature_model_dir(),
    output:
        "results/synthetic/tfaug/intensity.json",
    log:
        "logs/fit_tfaug_intensity/fit_tfaug_intensity.log",
    benchmark:
        "results/benchmarks/fit_tfaug_intensity/fit_tfaug_intensity.tsv"
    conda:
        "../../envs/tumorfab.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=240,
    params:
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
        intensity="results/synthetic/tfaug/intensity.json",
        real_segs=expand("results/preprocess/real/{case}/seg.nii.gz", case=TRAIN_CASES),
        healthy=[f for subject in HEALTHY_SUBJECTS for f in healthy_case_files(subject)],
    output:
        cases=directory("results/synthetic/tfaug/cases"),
        manifest="results/synthetic/tfaug/manifest.csv",
    log:
        "logs/generate_tfaug/generate_tfaug.log",
    benchmark:
        "results/benchmarks/generate_tfaug/generate_tfaug.tsv"
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        # The largest n_synthetic of the tfaug and tf experiments (TF-GAN refines these).
        n_cases=max(synthetic_size(config["experiments"], s) for s in ("tfaug", "tf")),
        modalities=config["data"]["modalities"],
        seed=config["seed"],
        masks=config["tfaug"]["masks"],
        blur_sigma=config["tfaug"]["blur_sigma"],
        controls=config["tfaug"]["controls"],
        mass_effect=config["tfaug"]["mass_effect"],
    script:
        "../scripts/generate_tfaug.py"
