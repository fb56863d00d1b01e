"""The study's report: per-case and per-run CSVs, the paper's Tables 1-3
(paper 002 §3.2.3, §3.2.5) as CSV and Markdown, and figures.

``tables``: collecting the evaluation CSVs, per-run means, the tables with
mean ± std over seeds, Mean Diff and Student's t-test p-values.
``figures``: Dice against the number of synthetic cases, mosaics of
synthetic cases per source, and TF-GAN's refinement (coarse vs refined).
``realism``: Fréchet distances of F's features, synthetic vs real, per source.
``settings``: the ``report`` config section (imports nothing heavy).
"""
