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
        healthy={
            s: {c: str(p) for c, p in files.items()}
            for s, files in STUDY.healthy_scans.items()
        },
        data=config["data"],
    script:
        "../scripts/prepare.py"
