# tumorfab: Tumor Fabrication study (paper 002) as a Snakemake workflow.
# Stages: [demo] -> prepare -> preprocess -> synthesize -> segment -> report.
# See README.md and docs/architecture.md.


# The paper's study by default; a --configfile (e.g. the demo preset) replaces
# it rather than being merged into it, so that presets do not inherit the
# paper's experiments.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


if config["demo"]["enabled"]:

    include: "workflow/rules/demo.smk"


include: "workflow/rules/prepare.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/segmentation.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/tfaug.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        rules.preprocess_all.input,
        get_report_outputs(),
