"""Stage 2, preprocess (SPEC §2 item 2): healthy heads onto the real cases' grid.

``skullstrip`` (SynthStrip or the MNI atlas), ``registration`` (ANTsPy onto a
real reference case), ``normalize`` (intensities to [-1, 1], the case folders
of real and healthy scans), ``qc`` (the pictures each step leaves) and
``ants`` (ANTsPy made deterministic).
"""
