"""Generative models: learn p(x) from images and sample new ones.

`vae-mnist`: the variational autoencoder (Kingma & Welling 2014) of the curriculum on MNIST: ELBO, the
reparameterisation trick, the KL term in closed form, an importance-weighted bound on log p(x) (Burda et al.
2016), reconstructions, samples and a 2-D latent map. GANs are added by the GAN part of issue 20.
`ae-mnist`: a plain and a denoising autoencoder compared on clean and corrupted images (MNIST or Fashion-MNIST);
`ae-stacked`: greedy layer-wise pre-training with autoencoders, fine-tuned with 100 / 1,000 / all labels against
the same network trained from random initial weights. `pix2pix-flowers`: image-to-image translation (edges →
photo) with a U-Net generator and a PatchGAN, and its ablation L1 / cGAN / both.

`wavenet-fsdd`: WaveNet (dilated causal convolutions, gated units, μ-law softmax) on spoken digits, with fast
generation by per-layer queues.

Every experiment of this family defines a module-level `sample_images(model, n, *, label, generator)` (images
in [0, 1], shape (n, C, H, W)) or, for sound, `sample_audio(model, n, *, label, generator)` (waveforms and their
sample rate); `dldojo sample RUN_DIR` and the Python action `sample` find it there.
"""

from dldojo.engine.family import Family

FAMILY = Family(
    name="generative",
    experiments=(
        "dldojo.generative.vae",
        "dldojo.generative.gan",
        "dldojo.generative.pix2pix",
        "dldojo.generative.autoencoder",
        "dldojo.generative.stacked_autoencoder",
        "dldojo.generative.wavenet",
    ),
    datasets=("dldojo.data.images", "dldojo.data.audio"),
    commands="dldojo.generative.cli",
    actions={"sample": "dldojo.generative.actions:sample"},
)
