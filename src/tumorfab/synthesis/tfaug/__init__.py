"""TF-Aug: coarse tumour synthesis on healthy scans (paper 002 §2.1, SPEC §2 item 4).

* ``masks``: the bank of real training masks, their augmentation (scaling,
  rotation/flip, shifting, combining) and placement inside a healthy brain;
* ``blend``: Eq. 1, ``x_s' = I(B(x_h, m_s))`` (ROI blur, per-subregion a·x+b);
* ``intensity_fit``: (a, b) fitted by SGD on F-features (the ``fit_tfaug_intensity`` rule);
* ``controls``: user controls of location, size, number, intensity offset and texture (SPEC §5);
* ``mass_effect``: optional diffeomorphic displacement of the tissue around lesions (SPEC §5);
* ``generate``: the ``generate_tfaug`` rule (case folders + manifest, nested prefixes).
"""

from tumorfab.synthesis.tfaug.generate import generate_tfaug
from tumorfab.synthesis.tfaug.intensity_fit import fit_tfaug_intensity

__all__ = ["fit_tfaug_intensity", "generate_tfaug"]
