# Synthesize: the comparison methods (paper 002 §3.2.1), each a source of
# tumorfab.synthesis.SOURCES writing the same outputs as every source: its
# case folders and its manifest.


rule generate_carvemix:
    """CarveMix (Zhang et al. 2023; paper 002 §3.2.1, Table 1) from the real
    training cases only, at the largest size any carvemix experiment needs."""
    input:
        STUDY.real_files(STUDY.train_cases),
    output:
        cases=directory(layout.synthetic_cases_dir("carvemix")),
        manifest=layout.synthetic_manifest("carvemix"),
    log:
        "logs/generate_carvemix/carvemix.log",
    benchmark:
        layout.benchmark_tsv("generate_carvemix", "carvemix")
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=120,
    params:
        train_case_dirs={case: layout.real_case_dir(case) for case in STUDY.train_cases},
        carvemix=SETTINGS.carvemix,
        modalities=MODALITIES,
        n_cases=STUDY.generation_size("carvemix"),
        seed=STUDY.seed,
    script:
        "../scripts/generate_carvemix.py"
