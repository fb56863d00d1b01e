"""TF-GAN: region-aware refinement of TF-Aug's coarse pairs (paper 002 §2.2).

* ``networks``: G (a six-level 3D U-Net, nearest-neighbour upsampling and a
  convolution, no transposed convolution) and D (a five-stage encoder with a
  PatchGAN head and a global head), both conditioned on the one-hot mask;
* ``losses``: Eq. 2 (hinge L1 outside the ROI), Eq. 3 (class-wise perceptual
  loss on F), Eq. 4 (adversarial log loss on both heads), Eq. 5 (the total);
* ``train``: the ``train_tfgan`` rule (crops, mixed precision, checkpoints, resume, loss curves);
* ``refine``: the ``generate_tf`` rule (sliding-window refinement with
  Gaussian blending; the source ``tf`` of ``tumorfab.synthesis.SOURCES``)
  and ``translate`` (G on a real case given some of its channels);
* ``channels``: with more than one modality G is a modality translator (paper
  002 §4's future work): which channels G is given, on the coarse pairs
  (TF-Aug's ``healthy_channels``) and on the real cases it learns
  translation from.

What is not TF-GAN's own (crops, mixed precision, the trainer's optimizers
and checkpoints, the training loop, the generator file, the generation loop,
the brain-box sliding window) is in ``tumorfab.synthesis.gan``, shared with
Pix2Pix; its settings are ``tumorfab.synthesis.gan_settings.TFGANSettings``.
"""
