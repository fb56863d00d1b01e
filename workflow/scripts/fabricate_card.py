from pathlib import Path

from tumorfab.fabricate.card import write_card
from tumorfab.log import log_to
from tumorfab.report.realism import realism_table

with log_to(snakemake.log[0]):
    cohort = snakemake.params.cohort
    realism = realism_table(
        snakemake.input.feature_extractor,
        snakemake.params.n_stages,
        snakemake.params.real_case_dirs,
        {cohort.source: (snakemake.input.manifest, snakemake.input.cases)},
        snakemake.params.modalities,
    )
    models = {name: snakemake.input[name] for name in ("intensity", "generator") if name in snakemake.input.keys()}
    write_card(
        name=cohort.name,
        cohort=cohort.requested(),
        source=cohort.source,
        manifest_path=snakemake.input.manifest,
        cases_dir=snakemake.input.cases,
        models=models,
        command=snakemake.params.command,
        realism=realism,
        out_md=snakemake.output.md,
        out_json=snakemake.output.json,
        figures_dir=Path(snakemake.output.mosaic).parent,
        healthy_case_dirs=snakemake.params.healthy_case_dirs,
        layout_manifest_path=snakemake.input.get("layout_manifest"),
    )
