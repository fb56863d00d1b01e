# Report: per-case and per-run CSVs, the paper's tables (CSV + Markdown) and
# figures, all wrapped for `snakemake --report`. Reads the segmentation
# evaluation CSVs of every run and the case folders of each synthetic source.


# The description at the top of `snakemake --report report.html`.
report: "../report/workflow.rst"


# Cheap summaries: on a cluster they run on the submitting node.
localrules:
    report_collect,
    report_tables,
    report_dice_vs_synthetic,


rule report_collect:
    input:
        csvs=STUDY.evaluation_csvs(),
    output:
        per_case=layout.report_file("per_case.csv"),
        per_run=report(
            layout.report_file("per_run.csv"),
            caption="../report/per_run.rst",
            category="Segmentation",
            subcategory="Per-run metrics",
        ),
    log:
        "logs/report_collect/report_collect.log",
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        # (experiment, seed) of each evaluation CSV, in the same order.
        runs=STUDY.runs,
    script:
        "../scripts/report_collect.py"


rule report_tables:
    input:
        per_run=rules.report_collect.output.per_run,
    output:
        csv=report(
            layout.report_file("{table}.csv"),
            caption="../report/table.rst",
            category="Segmentation",
            subcategory="Tables",
            labels={"table": "{table}", "format": "CSV"},
        ),
        md=report(
            layout.report_file("{table}.md"),
            caption="../report/table.rst",
            category="Segmentation",
            subcategory="Tables",
            labels={"table": "{table}", "format": "Markdown"},
        ),
    log:
        "logs/report_tables/{table}.log",
    wildcard_constraints:
        table="|".join(re.escape(t) for t in STUDY.tables),
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        table=lambda wildcards: STUDY.tables[wildcards.table],
        labels=get_table_labels,
        # The configured seeds: a row lacking one is marked in the table.
        seeds=STUDY.seeds,
    script:
        "../scripts/report_tables.py"


rule report_dice_vs_synthetic:
    input:
        per_run=rules.report_collect.output.per_run,
    output:
        figure=report(
            layout.report_figure("dice_vs_n_synthetic"),
            caption="../report/dice_vs_n_synthetic.rst",
            category="Segmentation",
            subcategory="Figures",
        ),
    log:
        "logs/report_dice_vs_synthetic/report_dice_vs_synthetic.log",
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        experiments=STUDY.enrichment_experiments(),
    script:
        "../scripts/report_dice_vs_synthetic.py"


rule mosaic_synthetic:
    input:
        cases=layout.synthetic_cases_dir("{source}"),
        manifest=layout.synthetic_manifest("{source}"),
    output:
        figure=report(
            layout.report_figure("mosaic_{source}"),
            caption="../report/mosaic.rst",
            category="Synthetic cases",
            labels={"source": "{source}"},
        ),
    log:
        "logs/mosaic_synthetic/{source}.log",
    wildcard_constraints:
        source="|".join(STUDY.synthetic_sources) or "(?!)",
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        report=SETTINGS.report,
        modalities=MODALITIES,
    script:
        "../scripts/mosaic_synthetic.py"


# Several sequences: a real case's and each source's first case side by side.
if len(MODALITIES) > 1:

    rule mosaic_sequences:
        input:
            real=STUDY.real_files([STUDY.reference_case]),
            manifests=[layout.synthetic_manifest(s) for s in STUDY.synthetic_sources],
            cases=[layout.synthetic_cases_dir(s) for s in STUDY.synthetic_sources],
        output:
            figure=report(
                layout.report_figure("sequences"),
                caption="../report/sequences.rst",
                category="Synthetic cases",
                subcategory="Sequences",
            ),
        log:
            "logs/mosaic_sequences/mosaic_sequences.log",
        localrule: True
        conda:
            "../../envs/tumorfab.yaml"
        params:
            sources={
                s: {
                    "manifest": layout.synthetic_manifest(s),
                    "cases_dir": layout.synthetic_cases_dir(s),
                }
                for s in STUDY.synthetic_sources
            },
            modalities=MODALITIES,
        script:
            "../scripts/mosaic_sequences.py"


# The refinement figure: a refining source's cases beside the ones it refined.
if STUDY.refined_source:

    rule mosaic_refinement:
        input:
            coarse_cases=layout.synthetic_cases_dir(
                STUDY.parent_of(STUDY.refined_source)
            ),
            refined_cases=layout.synthetic_cases_dir(STUDY.refined_source),
            refined_manifest=layout.synthetic_manifest(STUDY.refined_source),
        output:
            figure=report(
                layout.report_figure("refinement"),
                caption="../report/refinement.rst",
                category="Synthetic cases",
                subcategory="TF-GAN refinement",
            ),
        log:
            "logs/mosaic_refinement/mosaic_refinement.log",
        localrule: True
        conda:
            "../../envs/tumorfab.yaml"
        params:
            report=SETTINGS.report,
            modalities=MODALITIES,
        script:
            "../scripts/mosaic_refinement.py"


rule report_realism:
    """Realism before training: Fréchet distance of F's features, synthetic vs
    real training tumours and brains, per source; and the intensities per
    sequence (non-tumour brain, ET), which need no F."""
    input:
        feature_extractor=STUDY.feature_extractor_dir,
        real=STUDY.real_files(STUDY.train_cases + STUDY.val_cases),
        manifests=[layout.synthetic_manifest(s) for s in STUDY.synthetic_sources],
        cases=[layout.synthetic_cases_dir(s) for s in STUDY.synthetic_sources],
    output:
        csv=report(
            layout.report_file("realism.csv"),
            caption="../report/realism.rst",
            category="Synthetic cases",
            subcategory="Realism",
        ),
        md=layout.report_file("realism.md"),
        figure=report(
            layout.report_figure("realism"),
            caption="../report/realism.rst",
            category="Synthetic cases",
            subcategory="Realism",
        ),
        intensities_csv=report(
            layout.report_file("intensities.csv"),
            caption="../report/intensities.rst",
            category="Synthetic cases",
            subcategory="Intensities",
        ),
        intensities_md=layout.report_file("intensities.md"),
    log:
        "logs/report_realism/report_realism.log",
    benchmark:
        layout.benchmark_tsv("report_realism", "report_realism")
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    params:
        real_case_dirs=[layout.real_case_dir(case) for case in STUDY.train_cases],
        # Held-out cases only as the "real vs real" reference row.
        reference_case_dirs=[layout.real_case_dir(case) for case in STUDY.val_cases],
        sources={
            s: {
                "manifest": layout.synthetic_manifest(s),
                "cases_dir": layout.synthetic_cases_dir(s),
            }
            for s in STUDY.synthetic_sources
        },
        modalities=MODALITIES,
        n_stages=SETTINGS.tfgan.n_stages,
    script:
        "../scripts/report_realism.py"
