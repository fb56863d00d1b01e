# Stage 1: validate every case the study uses and write the manifests.


rule prepare:
    input:
        get_all_raw_files,
    output:
        cases=PREPARED_CASES,
        healthy=PREPARED_HEALTHY,
    log:
        "logs/prepare/prepare.log",
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        split=SPLIT,
        healthy={s: str(p) for s, p in HEALTHY_FILES.items()},
        data=config["data"],
    script:
        "../scripts/prepare.py"
