# Stage 3, synthesize: the comparison methods (SPEC §2 item 7; paper 002
# §3.2.1), each a source of tumorfab.synthesis.SOURCES writing the same outputs
# as every source: synthetic_cases_dir(source) + synthetic_manifest(source).


rule generate_carvemix:
    """CarveMix (Zhang et al. 2023; paper 002 §3.2.1, Table 1) from the real
    training cases only, at the largest size any carvemix experiment needs."""
    input:
        [f for case in TRAIN_CASES for f in real_case_files(case)],
    output:
        cases=directory(synthetic_cases_dir("carvemix")),
        manifest=synthetic_manifest("carvemix"),
    log:
        "logs/generate_carvemix/carvemix.log",
    benchmark:
        "results/benchmarks/generate_carvemix/carvemix.tsv"
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=120,
    params:
        train_case_dirs={case: real_case_dir(case) for case in TRAIN_CASES},
        carvemix=config["carvemix"],
        modalities=config["data"]["modalities"],
        n_cases=GENERATION_SIZE["carvemix"],
        seed=config["seed"],
    script:
        "../scripts/generate_carvemix.py"
