# The embedded demo cohort: a phantom built from nilearn's shipped MNI152
# template (tumorfab.demo). Only part of the DAG when demo.enabled is true.


rule make_demo_cohort:
    output:
        STUDY.demo_cohort_files(),
    log:
        "logs/make_demo_cohort/make_demo_cohort.log",
    conda:
        "../../envs/tumorfab.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        demo=config["demo"],
        data={
            k: config["data"][k]
            for k in ("brats_root", "healthy_root", "modalities", "healthy_sequences")
        },
        seed=STUDY.seed,
    script:
        "../scripts/make_demo_cohort.py"
