"""The run context every experiment receives (Lightning Fabric's "you keep your loop" spirit).

It owns everything that is not the experiment's science: the run directory, seeding and RNG state,
the metrics log, progress bars, checkpoints (periodic, on Ctrl-C / SIGTERM, resumable), NaN guards,
figures and tables for the report, and the distributed setup when launched under `torchrun`.

Run directory layout::

    config.json        experiment, preset, seed and the resolved config
    metrics.jsonl      one JSON object per logged step
    checkpoints/last.pt
    decisions.json     values the run chose for itself (e.g. epochs that fit its time budget)
    figures/*.png      pictures for the report
    tables/*.json      small tables for the report
    model.safetensors  final weights (when the experiment saves them)
    summary.json       final metrics, wall time, threads, versions
    report.html        self-contained report
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from dldojo.engine import checkpoint as ckpt
from dldojo.engine.errors import NonFiniteLoss, RunInterrupted

# Test hooks: deliver a real SIGINT / SIGKILL to this process when the loop reaches a step.
INTERRUPT_ENV = "DLDOJO_TEST_INTERRUPT_AT_STEP"
KILL_ENV = "DLDOJO_TEST_KILL_AT_STEP"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "python": _tuples_to_lists(random.getstate()),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }


def restore_rng(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    np.random.set_state(("MT19937", npst["key"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                         npst["cached_gaussian"]))
    torch.set_rng_state(state["torch"])


def _tuples_to_lists(x: Any) -> Any:
    if isinstance(x, tuple | list):
        return [_tuples_to_lists(v) for v in x]
    return x


# The instruction-set extensions that decide how fast a CPU trains: "AMD EPYC" alone names both a Zen 3
# (AVX2 only: fp32, ~150 airbench94 img/s on 2 cores) and a Zen 4 (AVX512-BF16: bf16, ~490 img/s).
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")


def cpu_fields() -> dict[str, str]:
    """The first core's entries of /proc/cpuinfo ("model name", "cpu family", "flags", ...); {} where there is none."""
    fields: dict[str, str] = {}
    try:
        for line in CPUINFO.read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_flags() -> set[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo is missing)."""
    return set(cpu_fields().get("flags", "").split())


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 dot products (AVX512-BF16 or AMX); without them oneDNN
    emulates bf16 and it is slower than fp32 (measured: 4× slower on an Ice Lake, 16× on a Zen 3)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def machine_info() -> dict[str, Any]:
    fields = cpu_fields()
    cpu = fields.get("model name") or platform.processor() or platform.machine()
    family_model = f"{fields['cpu family']}/{fields['model']}" if "cpu family" in fields and "model" in fields else ""
    flags = set(fields.get("flags", "").split())
    commit = ""
    try:
        root = Path(__file__).resolve().parents[3]
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {"cpu": cpu, "cpu_family_model": family_model, "cpu_isa": [f for f in SPEED_FLAGS if f in flags],
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "commit": commit}


class RunContext:
    """Handed to `experiment.run(ctx, cfg)`. Attributes a loop uses:

    - `seed`, `rng` (a NumPy Generator whose state is checkpointed), `preset`, `run_dir`
    - `log(step, **metrics)`, `progress(total, desc)`, `check_finite(loss, step)`
    - `tick(step, state_fn)`: call once per step; saves `state_fn()` when a checkpoint is due
    - `restore()` -> the saved state dict or None, `save_checkpoint(step, state)`
    - `decide(name, choose)`: a value chosen once per run (kept for `--resume`), e.g. budgeted epochs
    - `save_figure(fig, name)`, `save_table(name, rows)`, `save_weights(tensors)`, `path(name)`
    - `rank`, `world_size`, `is_main`, `wrap_model(model)`, `all_reduce_mean(x)`
    """

    def __init__(self, run_dir: Path, experiment: str, preset: str, seed: int, *, resume: bool = False,
                 checkpoint_every_seconds: float = 60.0, checkpoint_every_steps: int | None = None,
                 quiet: bool = False):
        self.run_dir = Path(run_dir)
        self.experiment = experiment
        self.preset = preset
        self.seed = seed
        self.resuming = resume
        self.checkpoint_every_seconds = checkpoint_every_seconds
        self.checkpoint_every_steps = checkpoint_every_steps
        self.quiet = quiet
        self.rank = int(os.environ.get("RANK", "0"))
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.is_main = self.rank == 0
        self.device = torch.device("cpu")
        self.rng = np.random.default_rng(seed)
        self.elapsed_before = 0.0  # wall seconds spent in earlier sessions of a resumed run
        self._t0 = time.perf_counter()
        self._last_ckpt_time = time.perf_counter()
        self._last_ckpt_step = -1
        self._interrupted = False
        self._interrupt_at = int(os.environ.get(INTERRUPT_ENV, "-1"))
        self._kill_at = int(os.environ.get(KILL_ENV, "-1"))
        self._bars: list[tqdm] = []
        seed_everything(seed + self.rank)

    # ----- paths -----
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    def path(self, name: str) -> Path:
        p = self.run_dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def wall_seconds(self) -> float:
        return self.elapsed_before + time.perf_counter() - self._t0

    # ----- logging and progress -----
    def log(self, step: int, **metrics: float) -> None:
        """Append one JSON line: {"step", "wall", **metrics}."""
        if not self.is_main:
            return
        record = {"step": int(step), "wall": round(self.wall_seconds, 3)}
        record.update({k: (float(v) if isinstance(v, int | float | np.floating | np.integer) or
                           torch.is_tensor(v) else v) for k, v in metrics.items()})
        with open(self.run_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def progress(self, total: int, desc: str = "train", initial: int = 0, unit: str = "step") -> tqdm:
        """A tqdm bar on stderr (rate, ETA); set its postfix with loss / metric."""
        interactive = sys.stderr.isatty()
        bar = tqdm(total=total, initial=initial, desc=f"{self.experiment} {desc}", unit=unit, dynamic_ncols=True,
                   disable=self.quiet or not self.is_main, mininterval=0.2 if interactive else 10.0,
                   leave=interactive, file=sys.stderr)
        self._bars.append(bar)
        return bar

    def check_finite(self, loss: float | torch.Tensor, step: int, hint: str = "") -> None:
        value = float(loss)
        if math.isfinite(value):
            return
        last = ""
        if self.checkpoint_path.exists():
            last = f" The last good checkpoint is {self.checkpoint_path} (resume with --resume {self.run_dir})."
        raise NonFiniteLoss(
            f"loss became {value} at step {step}; the run stopped before the weights were corrupted further."
            f" Try a lower learning rate (--set lr=...), gradient clipping, or a smaller init; check the data."
            f"{(' ' + hint) if hint else ''}{last}"
        )

    # ----- choices made once per run -----
    def decide(self, name: str, choose: Callable[[], Any]) -> Any:
        """A value the run chooses for itself once (e.g. the epochs that fit a time budget on this machine),
        kept in decisions.json: a resumed run reads it back instead of choosing again, which could differ."""
        path = self.run_dir / "decisions.json"
        decisions = json.loads(path.read_text()) if path.exists() else {}
        if name not in decisions:
            value = [choose()]
            if self.world_size > 1:  # every rank takes rank 0's choice, or their step counts could differ
                dist.broadcast_object_list(value, src=0)
            decisions[name] = value[0]
            if self.is_main:
                self.path("decisions.json").write_text(json.dumps(decisions, indent=1))
        return decisions[name]

    # ----- checkpoints -----
    def save_checkpoint(self, step: int, state: dict[str, Any]) -> None:
        if self.is_main:
            ckpt.save_atomic({"step": int(step), "state": state, "rng": capture_rng(),
                              "rng_generator": self.rng.bit_generator.state,
                              "wall_seconds": self.wall_seconds}, self.checkpoint_path)
        self._last_ckpt_time = time.perf_counter()
        self._last_ckpt_step = step

    def restore(self) -> dict[str, Any] | None:
        """On `--resume`: load the last checkpoint, restore every RNG, and return {'step', **state}."""
        if not self.resuming:
            return None
        if not self.checkpoint_path.exists():  # killed before the first checkpoint: start over cleanly
            self._truncate_log(-1)
            return None
        saved = ckpt.load(self.checkpoint_path)
        restore_rng(saved["rng"])
        self.rng.bit_generator.state = saved["rng_generator"]
        self.elapsed_before = float(saved["wall_seconds"])
        self._t0 = time.perf_counter()
        self._last_ckpt_step = saved["step"]
        self._truncate_log(saved["step"])
        return {"step": saved["step"], **saved["state"]}

    def _truncate_log(self, step: int) -> None:
        """Drop log lines written after the checkpoint so a resumed run does not log a step twice."""
        log = self.run_dir / "metrics.jsonl"
        if not self.is_main or not log.exists():
            return
        kept = [line for line in log.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        log.write_text("".join(line + "\n" for line in kept))

    def tick(self, step: int, state_fn: Callable[[], dict[str, Any]]) -> None:
        """Call after each completed step. Saves a checkpoint when one is due and stops on Ctrl-C."""
        if step == self._kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if step == self._interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)
        due = self._interrupted or (time.perf_counter() - self._last_ckpt_time >= self.checkpoint_every_seconds)
        if self.checkpoint_every_steps and step - max(self._last_ckpt_step, 0) >= self.checkpoint_every_steps:
            due = True
        if due and step != self._last_ckpt_step:
            self.save_checkpoint(step, state_fn())
        if self._interrupted:
            raise RunInterrupted(
                f"interrupted at step {step}; checkpoint saved. Continue with: dldojo run {self.experiment} "
                f"--resume {self.run_dir}"
            )

    @contextmanager
    def interrupt_guard(self):
        """While active, the first Ctrl-C / SIGTERM asks the loop to checkpoint at the next `tick`."""
        def handler(signum, frame):
            if self._interrupted:  # second Ctrl-C: give up at once
                raise KeyboardInterrupt
            self._interrupted = True
            if self.is_main and not self.quiet:
                print("\n[dldojo] stopping after this step and saving a checkpoint (Ctrl-C again to abort)",
                      file=sys.stderr)

        previous = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: no handlers, plain KeyboardInterrupt semantics
            previous = {}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
            for bar in self._bars:
                bar.close()

    # ----- artefacts for the report -----
    def save_figure(self, fig, name: str) -> Path:
        import matplotlib.pyplot as plt

        path = self.path(f"figures/{name}.png")
        if self.is_main:
            fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        return path

    def save_table(self, name: str, rows: list[dict[str, Any]], caption: str = "") -> None:
        if self.is_main:
            self.path(f"tables/{name}.json").write_text(json.dumps({"caption": caption, "rows": rows}, indent=1))

    def save_weights(self, tensors: dict[str, torch.Tensor], name: str = "model") -> Path:
        from safetensors.torch import save_file

        path = self.path(f"{name}.safetensors")
        if self.is_main:
            tmp = path.with_suffix(".tmp")
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
            os.replace(tmp, path)
        return path

    # ----- distributed (torchrun, gloo on CPU) -----
    def setup_distributed(self) -> None:
        if self.world_size > 1 and not dist.is_initialized():
            dist.init_process_group("gloo")

    def wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.world_size > 1:
            return torch.nn.parallel.DistributedDataParallel(model)
        return model

    def all_reduce_mean(self, x: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            x = x.clone()
            dist.all_reduce(x)
            x /= self.world_size
        return x


def load_weights(run_dir: Path, name: str = "model") -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = Path(run_dir) / f"{name}.safetensors"
    if not path.exists():
        from dldojo.engine.errors import DojoError

        raise DojoError(f"{path} does not exist: the run did not finish. Resume it with --resume {run_dir}.")
    return load_file(str(path))
