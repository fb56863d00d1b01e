# Stage 3, synthesize: the 3D Pix2Pix baseline (paper 002 §3.2.1 (2); SPEC §2
# item 7), the source "pix2pix" of tumorfab.synthesis.SOURCES.
# train_pix2pix learns label map -> image on the real training cases (the
# label map: the tumour labels plus a "brain" label); generate_pix2pix draws
# an image for each of TF-Aug's label maps (the mask bank's masks placed in
# healthy brains), so that Pix2Pix and TF differ only in how the image is made.

# Settings that change what is computed (threads and memory do not); epochs
# null = as long as TF-GAN (the paper trains both for the same epochs).
PIX2PIX = {k: v for k, v in config["pix2pix"].items() if k not in ("threads", "mem_mb")}
PIX2PIX_EPOCHS = PIX2PIX["epochs"] or config["tfgan"]["epochs"]


rule train_pix2pix:
    """U-Net G and PatchGAN D for the configured epochs; resumes from its checkpoint."""
    input:
        real=[f for case in TRAIN_CASES for f in real_case_files(case)],
    output:
        generator=PIX2PIX_GENERATOR,
        losses=f"{synthetic_dir('pix2pix')}/losses.csv",
        curves=report(
            f"{synthetic_dir('pix2pix')}/losses.png",
            caption="../report/pix2pix_losses.rst",
            category="Synthetic cases",
            subcategory="Pix2Pix training",
        ),
    log:
        "logs/train_pix2pix/train_pix2pix.log",
    benchmark:
        "results/benchmarks/train_pix2pix/train_pix2pix.tsv"
    conda:
        "../../envs/tumorfab.yaml"
    threads: config["pix2pix"]["threads"]
    resources:
        gpu=1,
        mem_mb=config["pix2pix"]["mem_mb"],
        runtime=48 * 60,
    params:
        pix2pix=PIX2PIX,
        epochs=PIX2PIX_EPOCHS,
        real_case_dirs=[real_case_dir(case) for case in TRAIN_CASES],
        work_dir=PIX2PIX_CHECKPOINT_DIR,
        modalities=config["data"]["modalities"],
        seed=config["seed"],
    script:
        "../scripts/train_pix2pix.py"


rule generate_pix2pix:
    """An image for each TF-Aug label map a pix2pix experiment needs (sliding window)."""
    input:
        generator=PIX2PIX_GENERATOR,
        layout_cases=synthetic_cases_dir("tfaug"),
        layout_manifest=synthetic_manifest("tfaug"),
    output:
        cases=directory(synthetic_cases_dir("pix2pix")),
        manifest=synthetic_manifest("pix2pix"),
    log:
        "logs/generate_pix2pix/generate_pix2pix.log",
    benchmark:
        "results/benchmarks/generate_pix2pix/generate_pix2pix.tsv"
    conda:
        "../../envs/tumorfab.yaml"
    threads: config["pix2pix"]["threads"]
    resources:
        gpu=1,
        mem_mb=config["pix2pix"]["mem_mb"],
        runtime=24 * 60,
    params:
        n_cases=GENERATION_SIZE["pix2pix"],
        modalities=config["data"]["modalities"],
        seed=config["seed"],
        window=PIX2PIX["window"],
        overlap=PIX2PIX["overlap"],
        mixed_precision=PIX2PIX["mixed_precision"],
    script:
        "../scripts/generate_pix2pix.py"
