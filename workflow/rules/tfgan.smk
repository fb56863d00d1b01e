# Stage 3, synthesize: TF-GAN refinement of TF-Aug's coarse pairs (SPEC §2
# item 5; paper 002 §2.2), the source "tf" of tumorfab.synthesis.SOURCES.
# train_tfgan learns G against the real training cases with D and F (the
# backward edge, see the Snakefile); generate_tf refines every coarse pair an
# experiment needs, as a whole volume, into synthetic_cases_dir("tf").

# Settings that change what is computed (threads and memory do not).
TFGAN = {k: v for k, v in config["tfgan"].items() if k not in ("threads", "mem_mb")}


rule train_tfgan:
    """G and D trained for the configured epochs; resumes from its checkpoint."""
    input:
        coarse_cases=synthetic_cases_dir("tfaug"),
        coarse_manifest=synthetic_manifest("tfaug"),
        real=[f for case in TRAIN_CASES for f in real_case_files(case)],
        feature_extractor=FEATURE_EXTRACTOR_DIR,
    output:
        generator=TFGAN_GENERATOR,
        losses=f"{synthetic_dir('tf')}/losses.csv",
        curves=report(
            f"{synthetic_dir('tf')}/losses.png",
            caption="../report/tfgan_losses.rst",
            category="Synthetic cases",
            subcategory="TF-GAN training",
        ),
    log:
        "logs/train_tfgan/train_tfgan.log",
    benchmark:
        "results/benchmarks/train_tfgan/train_tfgan.tsv"
    priority: CRITICAL_PATH_PRIORITY
    conda:
        "../../envs/tumorfab.yaml"
    threads: config["tfgan"]["threads"]
    resources:
        gpu=1,
        mem_mb=config["tfgan"]["mem_mb"],
        runtime=48 * 60,
    params:
        tfgan=TFGAN,
        real_case_dirs=[real_case_dir(case) for case in TRAIN_CASES],
        work_dir=TFGAN_CHECKPOINT_DIR,
        modalities=config["data"]["modalities"],
        seed=config["seed"],
    script:
        "../scripts/train_tfgan.py"


rule generate_tf:
    """Every coarse pair a tf experiment needs, refined by sliding window (§2.2)."""
    input:
        generator=TFGAN_GENERATOR,
        coarse_cases=synthetic_cases_dir("tfaug"),
        coarse_manifest=synthetic_manifest("tfaug"),
    output:
        cases=directory(synthetic_cases_dir("tf")),
        manifest=synthetic_manifest("tf"),
    log:
        "logs/generate_tf/generate_tf.log",
    benchmark:
        "results/benchmarks/generate_tf/generate_tf.tsv"
    priority: CRITICAL_PATH_PRIORITY
    conda:
        "../../envs/tumorfab.yaml"
    threads: config["tfgan"]["threads"]
    resources:
        gpu=1,
        mem_mb=config["tfgan"]["mem_mb"],
        runtime=24 * 60,
    params:
        n_cases=GENERATION_SIZE["tf"],
        modalities=config["data"]["modalities"],
        seed=config["seed"],
        window=TFGAN["window"],
        overlap=TFGAN["overlap"],
        hinge_margin=TFGAN["hinge_margin"],
        mixed_precision=TFGAN["mixed_precision"],
    script:
        "../scripts/generate_tf.py"
