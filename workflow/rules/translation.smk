# Translation accuracy: with several sequences TF-GAN's G is a modality
# translator; it is scored on the held-out real cases against two baselines
# that learn nothing (t1n itself, t1n histogram-matched). Included from the
# Snakefile after tfgan.smk (it names rules.train_tfgan).


if STUDY.scores_translation:

    rule report_translation:
        """G's translation of the held-out real cases from t1n (and t1n + t2w),
        SSIM/PSNR/MAE in the brain outside the tumour, against the baselines."""
        input:
            generator=rules.train_tfgan.output.generator,
            heldout=STUDY.real_files(STUDY.val_cases),
            real=STUDY.real_files(STUDY.train_cases),
        output:
            csv=report(
                layout.report_file("translation.csv"),
                caption="../report/translation.rst",
                category="Synthetic cases",
                subcategory="Translation",
            ),
            md=layout.report_file("translation.md"),
        log:
            "logs/report_translation/report_translation.log",
        benchmark:
            layout.benchmark_tsv("report_translation", "report_translation")
        conda:
            "../../envs/tumorfab.yaml"
        threads: config["tfgan"]["threads"]
        resources:
            gpu=1,
            mem_mb=config["tfgan"]["mem_mb"],
            runtime=4 * 60,
        params:
            heldout_case_dirs=[layout.real_case_dir(case) for case in STUDY.val_cases],
            # The t1n_matched baseline's target intensities (never held-out cases).
            train_case_dirs=[layout.real_case_dir(case) for case in STUDY.train_cases],
            modalities=MODALITIES,
        script:
            "../scripts/report_translation.py"
