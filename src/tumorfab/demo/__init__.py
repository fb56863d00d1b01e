"""The embedded demo cohort's names, known before it exists (imports nothing heavy).

The workflow lists the demo's cases and healthy scans with these functions
while it builds the DAG; the cohort itself is drawn by
``tumorfab.demo.cohort.make_demo_cohort`` (the ``make_demo_cohort`` rule).
"""

from __future__ import annotations

import re


def planned_cases(n_patients: int, n_second_timepoint: int) -> list[str]:
    """Case ids of the demo cohort, sorted, without touching any file.

    Patients ``0 .. n_patients-1`` get timepoint ``000``; the first
    ``n_second_timepoint`` of them also get ``001`` (the same anatomy with a
    grown lesion), so that splits by patient have something to keep together.
    The workflow calls this when it builds the DAG, before the cohort exists.
    """
    if n_patients < 0 or not 0 <= n_second_timepoint <= n_patients:
        raise ValueError(
            f"demo: need 0 <= n_second_timepoint ({n_second_timepoint}) <= "
            f"n_patients ({n_patients})"
        )
    cases = [f"BraTS-GLI-{p:05d}-000" for p in range(n_patients)]
    cases += [f"BraTS-GLI-{p:05d}-001" for p in range(n_second_timepoint)]
    return sorted(cases)


def planned_healthy(n_healthy: int, sequence: str = "T1") -> list[str]:
    """File names of the demo's healthy scans of one ``sequence`` (IXI naming,
    ``IXI<id>-Demo-<num>-<sequence>.nii.gz``), one per subject, without touching any file.

    Every demo subject has every sequence of ``data.healthy_sequences`` (the
    sequence names of its channels, e.g. ``T1``, ``T2``); the pattern
    ``"*-{sequence}.nii.gz"`` finds them.
    """
    if n_healthy < 0:
        raise ValueError(f"demo: n_healthy must be >= 0, got {n_healthy}")
    if not re.fullmatch("[A-Za-z0-9]+", sequence):
        raise ValueError(f"demo: a healthy sequence name must be letters and digits, got {sequence!r}")
    return [f"IXI{100 + i:03d}-Demo-{i:04d}-{sequence}.nii.gz" for i in range(n_healthy)]
