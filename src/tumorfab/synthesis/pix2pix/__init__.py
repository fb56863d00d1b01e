"""3D Pix2Pix: label map -> image, the paper's GAN baseline (paper 002 §3.2.1 (2)).

* ``networks``: the 5-channel label map (background, brain minus tumour, NCR,
  ED, ET), G (MONAI ``UNet`` + tanh) and D (MONAI ``PatchDiscriminator``
  conditioned on the label map);
* ``losses``: pix2pix's objective (Isola et al. 2017): D halved BCE, G
  non-saturating BCE + λ_L1·L1;
* ``train``: the ``train_pix2pix`` rule on the real training cases (paired
  crops; checkpoints, resume, mixed precision from ``tumorfab.synthesis.gan``);
* ``generate``: the ``generate_pix2pix`` rule: an image for each of TF-Aug's
  label maps, by the shared generation loop and brain-box sliding window.

Its settings are ``tumorfab.synthesis.gan_settings.Pix2PixSettings``.
"""
