# Synthesize: TF-GAN's refinement of TF-Aug's coarse pairs (paper 002 §2.2),
# the source "tf" of tumorfab.synthesis.SOURCES. train_tfgan learns G against
# the real training cases with D and F (the backward edge, see the
# Snakefile); generate_tf refines every coarse pair an experiment needs, as a
# whole volume.


rule train_tfgan:
    """G and D trained for the configured epochs; resumes from its checkpoint."""
    input:
        **STUDY.feature_extractor_input("tf"),
        coarse_cases=rules.generate_tfaug.output.cases,
        coarse_manifest=rules.generate_tfaug.output.manifest,
        real=STUDY.real_files(STUDY.train_cases),
    output:
        generator=layout.generator_file("tf"),
        losses=layout.training_losses("tf", "csv"),
        curves=report(
            layout.training_losses("tf", "png"),
            caption="../report/tfgan_losses.rst",
            category="Synthetic cases",
            subcategory="TF-GAN training",
        ),
    log:
        "logs/train_tfgan/train_tfgan.log",
    benchmark:
        layout.benchmark_tsv("train_tfgan", "train_tfgan")
    priority: scheduling.CRITICAL_PATH
    conda:
        "../../envs/tumorfab.yaml"
    threads: config["tfgan"]["threads"]
    resources:
        gpu=1,
        mem_mb=config["tfgan"]["mem_mb"],
        runtime=48 * 60,
    params:
        tfgan=SETTINGS.tfgan,
        real_case_dirs=[layout.real_case_dir(case) for case in STUDY.train_cases],
        work_dir=layout.training_checkpoint_dir("train_tfgan"),
        modalities=MODALITIES,
        seed=STUDY.seed,
    script:
        "../scripts/train_tfgan.py"


rule generate_tf:
    """Every coarse pair a tf experiment needs, refined by sliding window (§2.2)."""
    input:
        generator=rules.train_tfgan.output.generator,
        coarse_cases=rules.generate_tfaug.output.cases,
        coarse_manifest=rules.generate_tfaug.output.manifest,
    output:
        cases=directory(layout.synthetic_cases_dir("tf")),
        manifest=layout.synthetic_manifest("tf"),
    log:
        "logs/generate_tf/generate_tf.log",
    benchmark:
        layout.benchmark_tsv("generate_tf", "generate_tf")
    priority: scheduling.CRITICAL_PATH
    conda:
        "../../envs/tumorfab.yaml"
    threads: config["tfgan"]["threads"]
    resources:
        gpu=1,
        mem_mb=config["tfgan"]["mem_mb"],
        runtime=24 * 60,
    params:
        n_cases=STUDY.generation_size("tf"),
        modalities=MODALITIES,
        seed=STUDY.seed,
        tfgan=SETTINGS.tfgan,
    script:
        "../scripts/generate_tf.py"
