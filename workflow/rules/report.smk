# Stage 9 (SPEC §2 item 9): per-case and per-run CSVs, the paper's Tables 1-3
# (CSV + Markdown), and figures, all wrapped for `snakemake --report`.
# Reads only the segmentation evaluation CSVs (get_evaluation_csvs) and the
# synthetic case folders of each source. Uses from common.smk: config,
# EXPERIMENTS, re and the "report" section (get_report_outputs,
# get_table_labels; get_evaluation_csvs from the "segmentation" section).


# The description at the top of `snakemake --report report.html`.
report: "../report/workflow.rst"


# Cheap summaries: on a cluster they run on the submitting node.
localrules:
    report_collect,
    report_tables,
    report_dice_vs_synthetic,


rule report_collect:
    input:
        csvs=lambda wildcards: get_evaluation_csvs(),
    output:
        per_case=f"{REPORT_DIR}/per_case.csv",
        per_run=report(
            f"{REPORT_DIR}/per_run.csv",
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
    script:
        "../scripts/report_collect.py"


rule report_tables:
    input:
        per_run=f"{REPORT_DIR}/per_run.csv",
    output:
        csv=report(
            f"{REPORT_DIR}/{{table}}.csv",
            caption="../report/table.rst",
            category="Segmentation",
            subcategory="Tables",
            labels={"table": "{table}", "format": "CSV"},
        ),
        md=report(
            f"{REPORT_DIR}/{{table}}.md",
            caption="../report/table.rst",
            category="Segmentation",
            subcategory="Tables",
            labels={"table": "{table}", "format": "Markdown"},
        ),
    log:
        "logs/report_tables/{table}.log",
    wildcard_constraints:
        table="|".join(re.escape(t) for t in config["tables"]),
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        table=lambda wildcards: config["tables"][wildcards.table],
        labels=get_table_labels,
        # The configured seeds: a row lacking one is marked in the table.
        seeds=config["segmentation"]["seeds"],
    script:
        "../scripts/report_tables.py"


rule report_dice_vs_synthetic:
    input:
        per_run=f"{REPORT_DIR}/per_run.csv",
    output:
        figure=report(
            f"{REPORT_DIR}/figures/dice_vs_n_synthetic.png",
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
        experiments=get_enrichment_experiments(),
    script:
        "../scripts/report_dice_vs_synthetic.py"


rule mosaic_synthetic:
    input:
        cases=synthetic_cases_dir("{source}"),
        manifest=synthetic_manifest("{source}"),
    output:
        figure=report(
            f"{REPORT_DIR}/figures/mosaic_{{source}}.png",
            caption="../report/mosaic.rst",
            category="Synthetic cases",
            labels={"source": "{source}"},
        ),
    log:
        "logs/mosaic_synthetic/{source}.log",
    wildcard_constraints:
        source="|".join(SYNTHETIC_SOURCES) or "(?!)",
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        report=config["report"],
        modalities=config["data"]["modalities"],
    script:
        "../scripts/mosaic_synthetic.py"


rule mosaic_refinement:
    input:
        coarse_cases=synthetic_cases_dir("tfaug"),
        refined_cases=synthetic_cases_dir("tf"),
        refined_manifest=synthetic_manifest("tf"),
    output:
        figure=report(
            f"{REPORT_DIR}/figures/refinement.png",
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
        report=config["report"],
        modalities=config["data"]["modalities"],
    script:
        "../scripts/mosaic_refinement.py"


rule report_realism:
    """Realism before training (issue #9 item 7): Fréchet distance of F's
    features, synthetic vs real training tumours and brains, per source."""
    input:
        feature_extractor=FEATURE_EXTRACTOR_DIR,
        real=[f for case in TRAIN_CASES + VAL_CASES for f in real_case_files(case)],
        manifests=[synthetic_manifest(s) for s in SYNTHETIC_SOURCES],
        cases=[synthetic_cases_dir(s) for s in SYNTHETIC_SOURCES],
    output:
        csv=report(
            f"{REPORT_DIR}/realism.csv",
            caption="../report/realism.rst",
            category="Synthetic cases",
            subcategory="Realism",
        ),
        md=f"{REPORT_DIR}/realism.md",
        figure=report(
            f"{REPORT_DIR}/figures/realism.png",
            caption="../report/realism.rst",
            category="Synthetic cases",
            subcategory="Realism",
        ),
    log:
        "logs/report_realism/report_realism.log",
    benchmark:
        "results/benchmarks/report_realism/report_realism.tsv"
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    params:
        real_case_dirs=[real_case_dir(case) for case in TRAIN_CASES],
        # Held-out cases only as the "real vs real" reference row.
        reference_case_dirs=[real_case_dir(case) for case in VAL_CASES],
        sources={
            s: {"manifest": synthetic_manifest(s), "cases_dir": synthetic_cases_dir(s)}
            for s in SYNTHETIC_SOURCES
        },
        modalities=config["data"]["modalities"],
        n_stages=config["tfgan"]["n_stages"],
    script:
        "../scripts/report_realism.py"
