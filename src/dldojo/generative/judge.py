"""Measuring generated MNIST digits with the project's MNIST classifier: mode coverage, MNIST-FID, label accuracy.

None of the course material measures a GAN; it shows sample grids. Three numbers make "it works" checkable:

* Class histogram (mode coverage). The judge classifies `n` samples (10,000 at the end of a run); a generator
  that covers every mode of MNIST gives each digit ≈ 10 % (the test set's own shares are 8.9–11.4 %). Mode
  collapse — the classic GAN failure — shows as digits at 0 % and others far above 10 %.
* MNIST-FID. The Fréchet Inception Distance (Heusel et al. 2017, "GANs trained by a two time-scale update rule
  converge to a local Nash equilibrium") fits a Gaussian N(μ, Σ) to network features of real images and one to
  features of generated images and reports the Fréchet (2-Wasserstein) distance between them:

      d² = ‖μ_r − μ_g‖² + Tr(Σ_r + Σ_g − 2 (Σ_r Σ_g)^{1/2})

  The original uses the 2048-d pool features of ImageNet's Inception-v3. Here the features are the
  penultimate layer of the project's MNIST classifier (`mnist-cnn`: the input of its last linear layer, 128-d),
  fitted on the 10,000 MNIST test images. So these numbers are "MNIST-FID": comparable with each other
  (same judge run), not with published FIDs, which live in another feature space. The floor is what real
  images score: the run reports 10,000 *training* images against the test images (`test_fid_train_images`).
* Label accuracy (cGAN): the fraction of samples drawn for label y that the judge classifies as y.

The judge comes from the engine, not from the vision family (families import no other family): a finished
`mnist-cnn` run of the given preset is found under the runs root, or run first as a sub-run
(`RunContext.requires`), and `load_run` rebuilds its model. Its test accuracy is a fact of every run.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dldojo.engine.errors import DojoError
from dldojo.engine.run import RunContext

JUDGES = {"mnist": "mnist-cnn", "fashion-mnist": "fashion-cnn", "cifar10": "cifar10-airbench94"}
"""The classifier experiment that judges samples of each dataset (its penultimate features are the FID's space)."""
NUM_CLASSES = 10


# ----- the Fréchet distance between two Gaussians -----

def fit_gaussian(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(μ, Σ) of (N, d) features in float64; Σ is the unbiased sample covariance (N − 1), as in pytorch-fid."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise DojoError(f"a Gaussian needs (N ≥ 2, d) features, got shape {x.shape}")
    return x.mean(0), np.cov(x, rowvar=False)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """The symmetric square root of a positive semi-definite matrix (negative rounding noise clipped to 0)."""
    eigenvalues, eigenvectors = np.linalg.eigh((sigma + sigma.T) / 2)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """d² = ‖μ₁ − μ₂‖² + Tr Σ₁ + Tr Σ₂ − 2 Tr (Σ₁Σ₂)^{1/2}.

    Σ₁Σ₂ is not symmetric, but it is similar to the symmetric PSD matrix M = Σ₁^{1/2} Σ₂ Σ₁^{1/2}
    (Σ₁Σ₂ = Σ₁^{1/2} M Σ₁^{-1/2}), so Tr (Σ₁Σ₂)^{1/2} = Σ_i √λ_i(M) with real λ_i ≥ 0: two symmetric eigen-
    decompositions instead of a general matrix square root (scipy.linalg.sqrtm, which pytorch-fid uses and
    which returns complex noise for nearly singular Σ). Equal to the sqrtm form (tested)."""
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise DojoError(f"Gaussians of different dimensions: μ {mu1.shape} / {mu2.shape}, Σ {sigma1.shape} / "
                        f"{sigma2.shape}")
    root1 = _psd_sqrt(sigma1)
    m = root1 @ sigma2 @ root1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


# ----- mode coverage -----

def class_fractions(predicted: np.ndarray | torch.Tensor, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """The fraction of samples the judge assigns to each class (sums to 1)."""
    predicted = np.asarray(predicted, dtype=np.int64)
    return np.bincount(predicted, minlength=num_classes)[:num_classes] / max(len(predicted), 1)


# ----- the judge -----

class Judge:
    """A trained MNIST classifier used as a measuring instrument: `judge(images)` → (logits, features).

    `images` are in [0, 1], (N, C, H, W); larger than the classifier's input (DCGAN's 32×32: MNIST padded by
    2 px) they are cropped to the centre. `features` are the input of the model's last `nn.Linear`, caught
    by a forward pre-hook, so any architecture with a linear head works."""

    def __init__(self, model: nn.Module, mean: list[float], std: list[float], image_size: int = 28,
                 batch_size: int = 1000):
        self.model = model.eval()
        heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not heads:
            raise DojoError("the judge classifier has no linear layer whose input could serve as features")
        self._features: list[torch.Tensor] = []
        heads[-1].register_forward_pre_hook(lambda module, inputs: self._features.append(inputs[0].detach()))
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.image_size, self.batch_size = image_size, batch_size
        self.test_accuracy: float | None = None  # of the judge's own run, when known

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = images.shape[-2:]
        if h < self.image_size or w < self.image_size:
            raise DojoError(f"the judge needs images of at least {self.image_size}×{self.image_size}, got {h}×{w}")
        top, left = (h - self.image_size) // 2, (w - self.image_size) // 2
        images = images[..., top:top + self.image_size, left:left + self.image_size]
        logits, features = [], []
        for start in range(0, len(images), self.batch_size):
            self._features.clear()
            x = (images[start:start + self.batch_size].float() - self.mean) / self.std
            logits.append(self.model(x).float())
            features.append(self._features[-1].flatten(1).float())
        return torch.cat(logits), torch.cat(features)

    def stats(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(μ, Σ) of the judge's features of `images`: the reference side of an MNIST-FID."""
        return fit_gaussian(self(images)[1].numpy())

    def score(self, images: torch.Tensor, reference: tuple[np.ndarray, np.ndarray],
              labels: torch.Tensor | None = None) -> dict[str, float | np.ndarray]:
        """MNIST-FID against `reference`, class fractions, and with `labels` (the labels the samples were drawn
        for) the fraction classified as requested and the (requested × classified) count matrix."""
        logits, features = self(images)
        predicted = logits.argmax(1)
        result: dict[str, float | np.ndarray] = {
            "fid": frechet_distance(*reference, *fit_gaussian(features.numpy())),
            "fractions": class_fractions(predicted.numpy())}
        if labels is not None:
            result["label_accuracy"] = float((predicted == labels).float().mean())
            matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
            np.add.at(matrix, (labels.numpy(), predicted.numpy()), 1)
            result["label_matrix"] = matrix
        return result


def load_judge(ctx: RunContext, preset: str, seed: int, dataset: str = "mnist") -> Judge:
    """The judge of `dataset`'s samples: a finished run (preset, seed) of its classifier experiment (`JUDGES`)
    from the runs root, run first if there is none."""
    if dataset not in JUDGES:
        raise DojoError(f"no judge for dataset {dataset!r}; one of {', '.join(JUDGES)}")
    run = ctx.requires(JUDGES[dataset], preset=preset, seed=seed)
    meta = run.read_json("classifier.json")
    if meta.get("dataset") != dataset or meta.get("num_classes") != NUM_CLASSES:
        raise DojoError(f"{run.run_dir} is not a {dataset} classifier of {NUM_CLASSES} classes; the judge must be "
                        f"a run of {JUDGES[dataset]}")
    judge = Judge(run.model, meta["mean"], meta["std"], image_size=int(meta["image_size"]))
    judge.test_accuracy = run.metrics.get("test_accuracy")
    return judge
