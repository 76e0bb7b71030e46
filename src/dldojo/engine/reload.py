"""One way to reload a finished run: `load_run(run_dir)` -> its experiment, validated config and model.

A family declares `build_model(cfg, run)` on its experiments (a fresh `nn.Module` of the trained shape;
`run` gives access to artefacts such as a vocabulary, `run.read_json("vocab.json")`); `load_run` loads the
saved weights into it. Commands that use a trained model (`recommend`, `translate`, `play`, `explain`, ...)
start from here, so every one of them gives the same clear errors: not a run, unfinished, wrong family,
damaged or mismatched weights. Weights are read from safetensors; nothing torch-pickled is unpickled.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from dldojo.engine.config import build_config, to_jsonable
from dldojo.engine.errors import DojoError
from dldojo.engine.files import read_json


def config_hash(experiment: str, config: Any) -> str:
    """A short digest of an experiment's resolved config: runs with equal hashes trained the same recipe."""
    values = config if isinstance(config, dict) else to_jsonable(config)
    text = json.dumps({"experiment": experiment, "config": values}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def summary_value(summary: dict[str, Any], name: str) -> float | None:
    """A result by name: from `metrics`, else from `timings` (a primary metric that is a time, e.g. A3C's)."""
    for section in ("metrics", "timings"):
        if name in summary.get(section, {}):
            return summary[section][name]
    return None


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise DojoError(f"{path} does not exist: the run did not save these weights (unfinished? resume it with "
                        f"`dldojo run --resume {path.parent}`).")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise DojoError(f"{path} is damaged or not a safetensors file ({str(exc).splitlines()[0]}); "
                        f"re-run the experiment to recreate it.") from None


def load_weights(run_dir: Path, name: str = "model") -> dict[str, torch.Tensor]:
    """The tensors a run saved with `ctx.save_weights(..., name)`."""
    return load_safetensors(Path(run_dir) / f"{name}.safetensors")


@dataclasses.dataclass
class LoadedRun:
    """A finished run: `experiment` (the registry entry), `config` (validated dataclass), `summary`, `model`."""

    run_dir: Path
    experiment: Any
    config: Any
    preset: str
    seed: int
    summary: dict[str, Any]

    @property
    def metrics(self) -> dict[str, float]:
        return self.summary.get("metrics", {})

    @property
    def timings(self) -> dict[str, float]:
        return self.summary.get("timings", {})

    @property
    def facts(self) -> dict[str, Any]:
        return self.summary.get("facts", {})

    def path(self, name: str) -> Path:
        return self.run_dir / name

    def read_json(self, name: str) -> Any:
        """An artefact the run saved with `ctx.save_json(name, ...)`."""
        return read_json(self.run_dir / name, what=f"saved by {self.experiment.name}")

    def weights(self, name: str = "model") -> dict[str, torch.Tensor]:
        return load_weights(self.run_dir, name)

    @functools.cached_property
    def model(self) -> torch.nn.Module:
        """The trained model in eval mode: `experiment.build_model(config, self)` with the saved weights."""
        if self.experiment.build_model is None:
            raise DojoError(f"{self.experiment.name} does not declare build_model: its runs cannot be reloaded.")
        model = self.experiment.build_model(self.config, self)
        weights = self.weights()
        try:
            model.load_state_dict(weights)
        except RuntimeError as exc:
            raise DojoError(f"{self.run_dir / 'model.safetensors'} does not fit {self.experiment.name}'s model "
                            f"({str(exc).splitlines()[0][:300]}); it was written by another version or altered.") from None
        return model.eval()


def load_run(run_dir: str | Path, *, family: str | None = None, experiments: tuple[str, ...] | None = None,
             finished: bool = True) -> LoadedRun:
    """Load a run directory. `family` / `experiments` restrict what is accepted (a command names what it can
    use); `finished=False` also accepts a run without summary.json (for reports of unfinished runs)."""
    from dldojo.engine import registry

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise DojoError(f"{run_dir} is not a dldojo run directory (no config.json). `dldojo runs` lists runs.")
    saved = read_json(run_dir / "config.json")
    if not isinstance(saved, dict) or not {"experiment", "preset", "seed", "config"} <= set(saved):
        raise DojoError(f"{run_dir / 'config.json'} is damaged (fields missing); it cannot be reloaded.")
    experiments_known = registry.load_all()
    name = saved["experiment"]
    if name not in experiments_known:
        raise DojoError(f"{run_dir} is a run of {name!r}, which this dldojo does not know.")
    experiment = experiments_known[name]
    if family is not None and experiment.family != family:
        raise DojoError(f"{run_dir} is a run of {name} (family {experiment.family}); this command needs a run of "
                        f"the {family} family (`dldojo list --family {family}`).")
    if experiments is not None and name not in experiments:
        raise DojoError(f"{run_dir} is a run of {name}; this command needs a run of {', '.join(experiments)}.")
    config = build_config(experiment.config_cls, saved["config"], experiment=name)
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        if finished:
            raise DojoError(f"{run_dir} has not finished (no summary.json). Continue it with "
                            f"`dldojo run --resume {run_dir}`.")
        summary: dict[str, Any] = {}
    else:
        summary = read_json(summary_path)
    return LoadedRun(run_dir, experiment, config, saved["preset"], saved["seed"], summary)
