"""The run context every experiment receives (Lightning Fabric's "you keep your loop" spirit).

It owns everything that is not the experiment's science: the run directory, seeding and RNG state,
the metrics log, progress bars, checkpoints (periodic, on Ctrl-C / SIGTERM, resumable), NaN guards,
figures and tables for the report, and the distributed setup when launched under `torchrun`.

Run directory layout::

    config.json        experiment, preset, seed and the resolved config
    metrics.jsonl      one JSON object per logged step
    checkpoints/last.pt  every `checkpoint_every_seconds` and on Ctrl-C / SIGTERM (none in a run that
                       finished within the first interval; a longer finished run keeps its last one)
    decisions.json     values the run chose for itself (e.g. epochs that fit its time budget)
    figures/*.png      pictures for the report
    tables/*.json      small tables for the report
    audio/*.wav        sounds for the report (16-bit PCM; audio/<section>/*.wav: several clips, one section)
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
import wave
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import autonotebook, std
from tqdm.auto import tqdm

from dldojo.engine import checkpoint as ckpt, plotting
from dldojo.engine.console import StatusLines
from dldojo.engine.errors import DojoError, NonFiniteLoss, RunInterrupted
from dldojo.engine.files import read_json, read_jsonl, write_json
from dldojo.engine.state import Streams, derive_seed, load_into, snapshot

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


def write_wav(path: Path, waveform: Any, sample_rate: int) -> Path:
    """Write a mono waveform as a 16-bit PCM WAV file (standard library `wave`), atomically: floats in [−1, 1]
    (clipped, scaled by 32767) or int16 samples as they are. Returns the path."""
    samples = np.asarray(waveform.detach().cpu() if torch.is_tensor(waveform) else waveform)
    if samples.ndim != 1 or not len(samples) or not (samples.dtype == np.int16 or np.issubdtype(samples.dtype,
                                                                                                 np.floating)):
        raise DojoError(f"a WAV clip must be one non-empty channel of floats in [-1, 1] or int16 samples, got "
                        f"{samples.dtype} of shape {samples.shape}")
    if not 0 < int(sample_rate) <= 1_000_000:
        raise DojoError(f"a WAV clip needs a sample rate between 1 and 1,000,000 Hz, got {sample_rate}")
    if samples.dtype != np.int16:
        samples = np.round(np.clip(np.nan_to_num(samples.astype(np.float64)), -1.0, 1.0) * 32767).astype(np.int16)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with wave.open(str(tmp), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(samples.astype("<i2").tobytes())
    os.replace(tmp, path)
    return path


CURVE_POINTS = 500
"""At most about this many points of a curve logged every step (`RunContext.log_sampled`), e.g. the learning rate."""

LOG_INTERVAL_SECONDS = 20.0
"""Seconds between two progress lines where stderr is not a terminal (a log file, `2>&1 | tee`)."""


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class _Bar(tqdm):
    """`tqdm.auto.tqdm` whose postfix (loss, metric) waits for the next scheduled redraw: experiments set it
    every step, and tqdm would otherwise redraw on every call, whatever `mininterval` says."""

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_postfix_str(self, s="", refresh=True):
        super().set_postfix_str(s, refresh=False)


class RunContext:
    """Handed to `experiment.run(ctx, cfg)`. What a loop uses:

    - `seed`, `preset`, `run_dir`, `rank`, `world_size`, `is_main`
    - `rng(name)` / `rng(name, "torch")`: a random stream derived from the seed and its name, checkpointed;
      `seed_for(name)`: an integer seed for an environment or a per-epoch shuffle, derived the same way
    - `restore(state)` -> step to continue from (state loaded in place on `--resume`);
      `tick(step, state)`: call once per step, checkpoints `state` when due and stops on Ctrl-C
    - `log(step, **metrics)`; `log_sampled(step, total, **metrics)` for a per-step curve (the learning rate)
      at a bounded number of points; `progress(total, desc)`, `check_finite(loss, step)`
    - `add_facts(**kv)` / `add_timings(**kv)`: the summary's `facts` (parameters, MACs, choices) and
      `timings` (seconds, throughput); the metrics `run` returns are only what the seed determines
    - `decide(name, choose)`: a value chosen once per run (kept for `--resume`), e.g. budgeted epochs
    - `requires(experiment, preset, **overrides)`: a finished sub-run (found or run first); `history(...)`
    - `save_figure(fig, name)`, `save_table(name, rows)`, `save_audio(name, waveform, sample_rate)`,
      `save_weights(tensors)`, `save_json(name, obj)`, `path(name)`
    - `wrap_model(model)`, `all_reduce_mean(x)` (under torchrun)
    """

    def __init__(self, run_dir: Path, experiment: str, preset: str, seed: int, *, resume: bool = False,
                 checkpoint_every_seconds: float = 60.0, checkpoint_every_steps: int | None = None,
                 quiet: bool = False, runs_root: Path | None = None, subrun: Callable[..., Any] | None = None):
        self.run_dir = Path(run_dir)
        self.runs_root = Path(runs_root) if runs_root is not None else self.run_dir.parent.parent
        self._subrun = subrun  # launch.require_run, handed in by the launcher (the engine's layers stay acyclic)
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
        self.streams = Streams(seed)
        self.facts: dict[str, Any] = {}
        self.timings: dict[str, float] = {}
        self.elapsed_before = 0.0  # wall seconds spent in earlier sessions of a resumed run
        self._t0 = time.perf_counter()
        self._last_ckpt_time = time.perf_counter()
        self._last_ckpt_step = -1
        self._interrupted = False
        self._interrupt_at = int(os.environ.get(INTERRUPT_ENV, "-1"))
        self._kill_at = int(os.environ.get(KILL_ENV, "-1"))
        self._bars: list[tqdm] = []
        seed_everything(seed + self.rank)
        plotting.use_bundled_font()  # before the experiment creates figures: Japanese glyphs need a font

    # ----- random streams -----
    def rng(self, name: str, kind: str = "numpy") -> Any:
        """The random stream `name` of this run: a NumPy Generator (default) or a torch.Generator (kind="torch").
        Derived from the run seed and the name (`state.derive_seed`); its state is in every checkpoint."""
        if kind == "torch":
            return self.streams.torch(name)
        if kind != "numpy":
            raise ValueError(f"kind must be 'numpy' or 'torch', not {kind!r}")
        return self.streams.numpy(name)

    def seed_for(self, name: str) -> int:
        """An integer seed in [0, 2**31) for `name` (an environment reset, an epoch's shuffle): stateless."""
        return derive_seed(self.seed, name, bits=31)

    # ----- what the summary reports besides metrics -----
    def add_facts(self, **facts: Any) -> None:
        """Facts about the run for the summary (parameters, MACs, epochs chosen, bf16 on/off): not metrics."""
        self.facts.update(facts)

    def add_timings(self, **timings: float) -> None:
        """Measured times and rates for the summary (seconds, images/s): they differ from run to run."""
        self.timings.update({k: float(v) for k, v in timings.items()})

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

    def log_sampled(self, step: int, total_steps: int, points: int = CURVE_POINTS, **metrics: float) -> None:
        """`log(step, **metrics)` at the first step, every ceil(total_steps / points)-th step and the last: a
        value that changes every step (a learning-rate schedule, warm-up included) drawn with at most
        ~`points` + 2 records, whatever the run's length. Which steps are logged depends only on the step, so
        a resumed run logs the same ones."""
        every = max(1, math.ceil(total_steps / max(points, 1)))
        if step == 1 or step % every == 0 or step == total_steps:
            self.log(step, **metrics)

    def history(self, *keys: str, run: Any = None) -> dict[str, list]:
        """The logged series of this run (or of `run`: a sub-run handle or a run directory): the records that
        hold every one of `keys`, as {"step": [...], "wall": [...], key: [...], ...}."""
        run_dir = self.run_dir if run is None else Path(getattr(run, "run_dir", run))
        records = [r for r in read_jsonl(run_dir / "metrics.jsonl") if all(k in r for k in keys)]
        return {k: [r.get(k) for r in records] for k in ("step", "wall", *keys)}

    def progress(self, total: int, desc: str = "train", initial: int = 0, unit: str = "step") -> tqdm:
        """A progress bar (rate, ETA); set its postfix with loss / metric. `tqdm.auto`: a widget in a notebook,
        a redrawn line on a terminal, and where stderr is a file or a pipe one plain line per
        `LOG_INTERVAL_SECONDS` (and the last state when the bar closes), never carriage-return redraws."""
        notebook = autonotebook.tqdm is not std.tqdm  # tqdm.auto chose the notebook widget
        interactive = notebook or _isatty(sys.stderr)
        bar = _Bar(total=total, initial=initial, desc=f"{self.experiment} {desc}", unit=unit,
                   dynamic_ncols=interactive, disable=self.quiet or not self.is_main,
                   mininterval=0.2 if interactive else LOG_INTERVAL_SECONDS,
                   maxinterval=max(10.0, LOG_INTERVAL_SECONDS), leave=True,
                   file=sys.stderr if interactive else StatusLines(sys.stderr))
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
        decisions = read_json(path) if path.exists() else {}
        if name not in decisions:
            value = [choose()]
            if self.world_size > 1:  # every rank takes rank 0's choice, or their step counts could differ
                dist.broadcast_object_list(value, src=0)
            decisions[name] = value[0]
            if self.is_main:
                write_json(path, decisions)
        self.facts[name] = decisions[name]
        return decisions[name]

    # ----- checkpoints -----
    def save_checkpoint(self, step: int, state: Any) -> None:
        """Write `state` (see `engine.state`), every RNG and the step atomically to checkpoints/last.pt."""
        if self.is_main:
            ckpt.save_atomic({"step": int(step), "state": snapshot(state), "rng": capture_rng(),
                              "streams": self.streams.state_dict(), "wall_seconds": self.wall_seconds},
                             self.checkpoint_path)
        self._last_ckpt_time = time.perf_counter()
        self._last_ckpt_step = step

    def restore(self, state: Any) -> int:
        """The step to continue from: 0 for a fresh run; on `--resume`, the checkpoint's step after loading the
        saved state into `state` in place and restoring every random generator."""
        if not self.resuming:
            return 0
        if not self.checkpoint_path.exists():  # killed before the first checkpoint: start over cleanly
            self._truncate_log(-1)
            return 0
        saved = ckpt.load(self.checkpoint_path)
        if not isinstance(saved, dict) or not {"step", "state", "rng", "streams", "wall_seconds"} <= set(saved):
            raise DojoError(f"{self.checkpoint_path} is not a checkpoint of this dldojo version; start a new run "
                            f"instead of resuming this one.")
        load_into(state, saved["state"])
        try:
            restore_rng(saved["rng"])
            self.streams.load_state_dict(saved["streams"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise DojoError(f"{self.checkpoint_path} holds a damaged random state ({exc}); start a new run.") from None
        self.elapsed_before = float(saved["wall_seconds"])
        self._t0 = time.perf_counter()
        self._last_ckpt_step = int(saved["step"])
        self._truncate_log(self._last_ckpt_step)
        return int(saved["step"])

    def _truncate_log(self, step: int) -> None:
        """Drop log lines written after the checkpoint (and a torn last line) so no step is logged twice."""
        log = self.run_dir / "metrics.jsonl"
        if not self.is_main or not log.exists():
            return
        kept = [r for r in read_jsonl(log) if r.get("step", 0) <= step]
        tmp = log.with_name(f".{log.name}.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, log)

    def tick(self, step: int, state: Any) -> None:
        """Call after each completed step with the declared state. Saves a checkpoint when one is due (every
        `checkpoint_every_seconds`, or on Ctrl-C / SIGTERM) and then stops the run if interrupted."""
        if step == self._kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if step == self._interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)
        due = self._interrupted or (time.perf_counter() - self._last_ckpt_time >= self.checkpoint_every_seconds)
        if self.checkpoint_every_steps and step - max(self._last_ckpt_step, 0) >= self.checkpoint_every_steps:
            due = True
        if due and step != self._last_ckpt_step:
            self.save_checkpoint(step, state)
        if self._interrupted:
            raise RunInterrupted(
                f"interrupted at step {step}; checkpoint saved. Continue with: dldojo run {self.experiment} "
                f"--resume {self.run_dir}"
            )

    # ----- other runs -----
    def requires(self, experiment: str, preset: str = "quick", seed: int | None = None, **overrides: Any):
        """A finished run of `experiment` with this preset, seed (default: this run's) and overrides: found
        under the runs root (same config hash), or resumed, or run now with its own run directory and
        progress. The caller's random state is the same afterwards either way. Returns a `LoadedRun`."""
        if self._subrun is None:
            raise DojoError(f"{self.experiment} needs a {experiment} run, which only a run started by `dldojo run` "
                            f"(engine.launch.run_experiment) can provide.")
        handle = self._subrun(self, experiment, preset=preset, seed=self.seed if seed is None else seed,
                             overrides=overrides)
        self.facts.setdefault("subruns", {})[experiment] = str(handle.run_dir)
        return handle

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

    def save_audio(self, name: str, waveform: Any, sample_rate: int) -> Path:
        """Write a mono clip as audio/<name>.wav (16-bit PCM, see `write_wav`) for the report, which plays it in
        the section <name>; a name "<section>/<clip>" puts several clips into one section (with a figure or
        table of the same section name)."""
        path = self.path(f"audio/{name}.wav")
        if self.is_main:
            write_wav(path, waveform, sample_rate)
        return path

    def save_table(self, name: str, rows: list[dict[str, Any]], caption: str = "") -> None:
        if self.is_main:
            write_json(self.path(f"tables/{name}.json"), {"caption": caption, "rows": rows})

    def save_json(self, name: str, obj: Any) -> Path:
        """Write `obj` as JSON to `name` in the run directory (atomically), e.g. a vocabulary for reloading."""
        path = self.path(name)
        if self.is_main:
            write_json(path, obj)
        return path

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
