"""What a finished generative run can do from Python (declared in this family's `FAMILY.actions`):

    dldojo.load(run_dir).sample(n=64, seed=0)            # a grid of new images, written as a PNG
    dldojo.load(cgan_run).sample(n=10, label=3)         # a conditional model: images of one class
    dldojo.load(wavenet_run).sample(n=10)               # an audio model: one WAV file per clip

the `dldojo sample` command as a function of the loaded run. Every experiment module of this family defines

    sample_images(model, n: int, *, label: int | None, generator: torch.Generator) -> torch.Tensor

returning n images in [0, 1], shape (n, C, H, W), or, for a model of sound,

    sample_audio(model, n: int, *, label: int | None, generator: torch.Generator) -> (waveforms, sample_rate)

returning n mono clips, a tensor (n, T) of samples in [−1, 1], and their rate in Hz (a model that is not
conditional raises a DojoError for a label); `sample` finds the function in the module of the run's experiment,
so a new model plugs in by defining one of them.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dldojo.engine.display import image_html
from dldojo.engine.errors import DojoError
from dldojo.engine.reload import LoadedRun

MAX_SAMPLES = 1024
DEFAULT_SAMPLES = {"sample_images": 64, "sample_audio": 10}  # what n=None means for each kind of model


@dataclasses.dataclass
class SampleGrid:
    """Images drawn from a generative run: `images` (n, C, H, W) in [0, 1] and the PNG grid at `path`."""

    images: Any
    path: Path
    experiment: str
    seed: int
    label: int | None = None

    def __repr__(self) -> str:
        what = f" of class {self.label}" if self.label is not None else ""
        return f"{len(self.images)} samples{what} from {self.experiment} (seed {self.seed}): {self.path}"

    def _repr_html_(self) -> str:
        return f"<p>{repr(self)}</p>" + image_html(self.path, alt="samples")


@dataclasses.dataclass
class AudioSamples:
    """Clips drawn from a generative run of sound: `waveforms` (n, T) in [−1, 1] at `sample_rate` Hz, written as
    the WAV files `paths` (16-bit PCM) inside the folder `folder`."""

    waveforms: Any
    sample_rate: int
    paths: list[Path]
    folder: Path
    experiment: str
    seed: int
    label: int | None = None

    def __repr__(self) -> str:
        what = f" of class {self.label}" if self.label is not None else ""
        seconds = self.waveforms.shape[1] / self.sample_rate
        return (f"{len(self.paths)} audio samples{what} of {seconds:.2f} s at {self.sample_rate} Hz from "
                f"{self.experiment} (seed {self.seed}): {self.folder}")

    def _repr_html_(self) -> str:
        from dldojo.engine.report import audio_html

        return f"<p>{repr(self)}</p>" + "".join(audio_html(p) for p in self.paths)


def sampler_of(run: LoadedRun) -> Callable[..., Any]:
    """The `sample_images` (or, for a model of sound, `sample_audio`) function of the module that defines the
    run's experiment."""
    return _sampler(run)[1]


def _sampler(run: LoadedRun) -> tuple[str, Callable[..., Any]]:
    module = importlib.import_module(run.experiment.run.__module__)
    for name in DEFAULT_SAMPLES:
        function = getattr(module, name, None)
        if function is not None:
            return name, function
    raise DojoError(f"{run.experiment.name} ({module.__name__}) defines neither sample_images nor sample_audio(model, "
                    f"n, *, label, generator); it cannot be sampled from.")


def _check_int(value: Any, what: str, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise DojoError(f"{what} must be an integer {bounds}, got {value!r}.")


def sample(run: LoadedRun, n: int | None = None, *, label: int | None = None, seed: int = 0,
           out: str | Path | None = None) -> SampleGrid | AudioSamples:
    """Draw `n` samples from the run's model (random stream `seed`; a conditional model's samples of class
    `label`). Images (default n = 64) are written as one PNG grid to `out` (default
    RUN_DIR/samples/samples-n{n}-seed{seed}.png); clips of sound (default n = 10) as one WAV file per clip into
    the folder `out` (default RUN_DIR/samples/audio-n{n}-seed{seed}/)."""
    import torch

    kind, function = _sampler(run)
    n = DEFAULT_SAMPLES[kind] if n is None else n
    _check_int(n, "n", 1, MAX_SAMPLES)
    _check_int(seed, "seed", 0)
    if label is not None:
        _check_int(label, "label", 0)
    audio = kind == "sample_audio"
    if out is not None and not audio and Path(out).suffix.lower() != ".png":
        raise DojoError(f"--out must name a .png file, got {out}.")
    if out is not None and audio and Path(out).suffix:
        raise DojoError(f"{run.experiment.name} makes sound: --out must name a folder for its WAV files (no file "
                        f"extension), got {out}.")
    tag = f"-label{label}" if label is not None else ""
    if audio:
        return _write_audio(run, function, n, label, seed, Path(out) if out is not None else
                            run.path(f"samples/audio-n{n}-seed{seed}{tag}"))
    model = run.model
    images = function(model, n, label=label, generator=torch.Generator().manual_seed(seed))
    if not (torch.is_tensor(images) and images.dim() == 4 and len(images) == n and images.is_floating_point()):
        raise DojoError(f"{run.experiment.name}'s sample_images returned {getattr(images, 'shape', type(images))}, "
                        f"not {n} images of shape (C, H, W); the experiment module is broken.")
    images = images.detach().clamp(0, 1)
    if out is None:
        out = run.path(f"samples/samples-n{n}-seed{seed}{tag}.png")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    from torchvision.utils import save_image

    save_image(images, path, nrow=math.ceil(math.sqrt(n)), padding=2, pad_value=1.0)
    return SampleGrid(images, path, run.experiment.name, seed, label)


def _write_audio(run: LoadedRun, function: Callable[..., Any], n: int, label: int | None, seed: int,
                 folder: Path) -> AudioSamples:
    import torch

    from dldojo.engine.run import write_wav

    waveforms, sample_rate = function(run.model, n, label=label, generator=torch.Generator().manual_seed(seed))
    if not (torch.is_tensor(waveforms) and waveforms.dim() == 2 and len(waveforms) == n
            and waveforms.is_floating_point() and isinstance(sample_rate, int) and sample_rate > 0):
        raise DojoError(f"{run.experiment.name}'s sample_audio returned {getattr(waveforms, 'shape', type(waveforms))} "
                        f"at {sample_rate!r} Hz, not {n} mono clips (n, T) and a sample rate; the experiment module is "
                        f"broken.")
    if folder.exists() and not folder.is_dir():
        raise DojoError(f"--out {folder} is a file; name a folder for the WAV files.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        paths = [write_wav(folder / f"sample_{i:03d}{f'_label{label}' if label is not None else ''}.wav", clip,
                           sample_rate) for i, clip in enumerate(waveforms.detach().clamp(-1, 1))]
    except OSError as exc:
        raise DojoError(f"cannot write the WAV files into {folder} ({exc.strerror or exc}); choose another "
                        f"--out.") from None
    return AudioSamples(waveforms.detach(), sample_rate, paths, folder, run.experiment.name, seed, label)
