# tumorfab: Tumor Fabrication study (paper 002) as a Snakemake workflow.
# See README.md and docs/architecture.md. Stages, one rule file each:
#
#   [demo] -> prepare -> preprocess -> synthesize -> segment -> report
#                                          ^            |
#                                          +---- F -----+
#
# The one backward edge: the baseline model (segment, first seed) is the
# feature extractor F that TF-Aug's intensity fit (and TF-GAN) need, so the
# baseline trains before those sources generate; `snakemake feature_extractor`
# builds F alone (FEATURE_EXTRACTOR_DIR in common.smk).
# The paper's study by default; a --configfile (e.g. the demo preset) replaces
# it rather than being merged into it, so that presets do not inherit the
# paper's experiments.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/paths.smk"


if config["demo"]["enabled"]:

    include: "workflow/rules/demo.smk"


include: "workflow/rules/prepare.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/segmentation.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/tfaug.smk"
include: "workflow/rules/tfgan.smk"
include: "workflow/rules/pix2pix.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        rules.preprocess_all.input,
        get_report_outputs(),
