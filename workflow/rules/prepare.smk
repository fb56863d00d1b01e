# Prepare: validate every case the study uses and write the manifests.


rule prepare:
    input:
        get_all_raw_files,
    output:
        cases=layout.prepared_cases(),
        healthy=layout.prepared_healthy(),
    log:
        "logs/prepare/prepare.log",
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        split=STUDY.split,
        healthy={s: str(p) for s, p in STUDY.healthy_files.items()},
        data=config["data"],
    script:
        "../scripts/prepare.py"
