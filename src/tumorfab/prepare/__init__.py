"""Prepare: find the real and healthy scans, check them, split them (paper 002 §3.1.1).

``cases``: the BraTS case folders and healthy scans on disk, their names and
the seeded split by patient (cheap: what the workflow needs to build the DAG).
``validate``: every scan opened and checked (geometry, labels, values), and
the manifests the later stages depend on (the ``prepare`` rule).
"""
