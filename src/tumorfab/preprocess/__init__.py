"""Preprocess (paper 002 §2, "Data Preprocessing"): healthy heads onto the real cases' grid.

``skullstrip`` (SynthStrip or the MNI atlas), ``bias`` (N4 bias-field
correction of healthy scans, on their own grids), ``registration`` (ANTsPy onto a
real reference case), ``normalize`` (intensities to [-1, 1], the case folders
of real and healthy scans), ``qc`` (the pictures each step leaves), ``ants``
(ANTsPy made deterministic) and ``settings`` (each step's config section,
typed and checked; imports nothing heavy).
"""
