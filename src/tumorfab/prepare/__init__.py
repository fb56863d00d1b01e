"""Stage 1, prepare (SPEC §2 item 1): find the real and healthy scans and check them.

``cases``: the BraTS case folders and healthy scans on disk, their names and
the seeded split by patient (cheap: what the workflow needs to build the DAG).
``validate``: every scan opened and checked (geometry, labels, values), and
the manifests the later stages depend on (the ``prepare`` rule).
"""
