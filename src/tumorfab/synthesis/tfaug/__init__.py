"""TF-Aug: coarse tumour synthesis on healthy scans (paper 002 §2.1).

* ``settings``: the ``tfaug`` config section as typed settings (imports nothing heavy);
* ``masks``: the bank of real training masks, their augmentation (scaling,
  rotation/flip, shifting, combining) and placement inside a healthy brain;
* ``blend``: Eq. 1, ``x_s' = I(B(x_h, m_s))`` (ROI blur, per-subregion a·x+b);
* ``intensity_fit``: (a, b) fitted by SGD on F-features (the ``fit_tfaug_intensity`` rule);
* ``controls``: user controls of location, size, number, intensity offset and
  texture (paper 000; not in paper 002);
* ``mass_effect``: optional diffeomorphic displacement of the tissue around
  lesions (not in the paper);
* ``generate``: the ``generate_tfaug`` rule (case folders + manifest, nested
  prefixes: docs/architecture.md, "Contract 2").
"""
