# Synthesize: the 3D Pix2Pix baseline (paper 002 §3.2.1 (2)), the source
# "pix2pix" of tumorfab.synthesis.SOURCES.
# train_pix2pix learns label map -> image on the real training cases (the
# label map: the tumour labels plus a "brain" label); generate_pix2pix draws
# an image for each of TF-Aug's label maps (the mask bank's masks placed in
# healthy brains), so that Pix2Pix and TF differ only in how the image is made.


rule train_pix2pix:
    """U-Net G and PatchGAN D for the configured epochs; resumes from its checkpoint."""
    input:
        real=STUDY.real_files(STUDY.train_cases),
    output:
        generator=layout.generator_file("pix2pix"),
        losses=layout.training_losses("pix2pix", "csv"),
        curves=report(
            layout.training_losses("pix2pix", "png"),
            caption="../report/pix2pix_losses.rst",
            category="Synthetic cases",
            subcategory="Pix2Pix training",
        ),
    log:
        "logs/train_pix2pix/train_pix2pix.log",
    benchmark:
        layout.benchmark_tsv("train_pix2pix", "train_pix2pix")
    conda:
        "../../envs/tumorfab.yaml"
    threads: config["pix2pix"]["threads"]
    resources:
        gpu=1,
        mem_mb=config["pix2pix"]["mem_mb"],
        runtime=48 * 60,
    params:
        pix2pix=SETTINGS.pix2pix,
        real_case_dirs=[layout.real_case_dir(case) for case in STUDY.train_cases],
        work_dir=layout.training_checkpoint_dir("train_pix2pix"),
        modalities=MODALITIES,
        seed=STUDY.seed,
    script:
        "../scripts/train_pix2pix.py"


rule generate_pix2pix:
    """An image for each TF-Aug label map a pix2pix experiment needs (sliding window)."""
    input:
        generator=rules.train_pix2pix.output.generator,
        layout_cases=rules.generate_tfaug.output.cases,
        layout_manifest=rules.generate_tfaug.output.manifest,
    output:
        cases=directory(layout.synthetic_cases_dir("pix2pix")),
        manifest=layout.synthetic_manifest("pix2pix"),
    log:
        "logs/generate_pix2pix/generate_pix2pix.log",
    benchmark:
        layout.benchmark_tsv("generate_pix2pix", "generate_pix2pix")
    conda:
        "../../envs/tumorfab.yaml"
    threads: config["pix2pix"]["threads"]
    resources:
        gpu=1,
        mem_mb=config["pix2pix"]["mem_mb"],
        runtime=24 * 60,
    params:
        n_cases=STUDY.generation_size("pix2pix"),
        modalities=MODALITIES,
        seed=STUDY.seed,
        pix2pix=SETTINGS.pix2pix,
    script:
        "../scripts/generate_pix2pix.py"
