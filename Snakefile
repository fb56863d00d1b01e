# tumorfab: Tumor Fabrication study (paper 002) as a Snakemake workflow.
# See README.md and docs/architecture.md. Stages, one rule file each:
#
#   [demo] -> prepare -> preprocess -> synthesize -> segment -> report
#                                          ^            |
#                                          +---- F -----+
#
# The one backward edge: the baseline model (segment, first seed) is the
# feature extractor F that TF-Aug's intensity fit and TF-GAN's training
# need, so the baseline trains before those sources generate;
# `snakemake feature_extractor` builds F alone. After the study, `snakemake
# fabricate` makes the named cohorts of fabricate.cohorts from its trained pieces.
# The config is the paper's study (config/config.yaml) with what a preset
# (--configfile, e.g. config/demo.yaml) and --config change (common.smk).


include: "workflow/rules/common.smk"


if config["demo"]["enabled"]:

    include: "workflow/rules/demo.smk"


include: "workflow/rules/prepare.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/segmentation.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/tfaug.smk"
include: "workflow/rules/tfgan.smk"
include: "workflow/rules/translation.smk"
include: "workflow/rules/pix2pix.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/fabricate.smk"


rule all:
    default_target: True
    input:
        rules.preprocess_all.input,
        STUDY.report_outputs(),
