"""Run engine: determinism, resume after SIGKILL, atomic checkpoints, safe loading, NaN guard, DDP.

Interrupt (SIGINT) -> resume equality is checked for every experiment by tests/test_smoke_registry.py."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
import torch

from dldojo.engine import checkpoint
from dldojo.engine import run as run_module
from dldojo.engine.errors import DojoError, NonFiniteLoss
from dldojo.engine.launch import run_experiment
from dldojo.engine.run import KILL_ENV


@pytest.mark.parametrize("name", ["collab-bias", "mf-sgd", "collab-nn"])
def test_same_seed_same_metrics(name, synthetic_data):
    a = run_experiment(name, preset="smoke", seed=3, quiet=True, report=False)
    b = run_experiment(name, preset="smoke", seed=3, quiet=True, report=False)
    c = run_experiment(name, preset="smoke", seed=4, quiet=True, report=False)
    assert a["metrics"] == b["metrics"]
    assert a["metrics"] != c["metrics"]


def test_killed_run_resumes_from_periodic_checkpoint(synthetic_data, tmp_path):
    cli = [sys.executable, "-m", "dldojo", "run", "collab-bias", "--preset", "smoke", "--quiet", "--json",
           "--set", "epochs=3", "--set", "batch_size=64", "--seed", "2", "--out", str(tmp_path / "k")]
    full = subprocess.run(cli, capture_output=True, text=True, check=True)
    killed = subprocess.run(cli + ["--checkpoint-every", "1e-9"], capture_output=True, text=True,  # every step
                            env={**os.environ, KILL_ENV: "25"})
    assert killed.returncode == -9  # SIGKILL: no chance to save anything at that moment
    run_dir = next(p for p in (tmp_path / "k" / "collab-bias").iterdir() if not (p / "summary.json").exists())
    assert torch.load(run_dir / "checkpoints/last.pt", weights_only=True)["step"] == 24
    resumed = subprocess.run([sys.executable, "-m", "dldojo", "run", "--resume", str(run_dir), "--quiet", "--json"],
                             capture_output=True, text=True, check=True)
    assert json.loads(resumed.stdout.splitlines()[-1])["metrics"] == json.loads(full.stdout.splitlines()[-1])["metrics"]


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ck" / "last.pt"
    checkpoint.save_atomic({"w": torch.ones(3)}, path)

    def broken_save(obj, fh):
        fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(DojoError, match="disk full.*previous checkpoint is intact"):
        checkpoint.save_atomic({"w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(checkpoint.load(path)["w"], torch.ones(3))  # the old checkpoint survives intact
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left behind


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_checkpoint_load_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    buf = io.BytesIO()
    torch.save({"x": Payload()}, buf)
    path.write_bytes(buf.getvalue())
    with pytest.raises(DojoError, match="cannot load checkpoint"):
        checkpoint.load(path)


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "last.pt"
    checkpoint.save_atomic({"w": torch.ones(1000)}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DojoError, match="cannot load checkpoint"):
        checkpoint.load(path)


def test_nan_loss_stops_with_step_and_advice(synthetic_data):
    with pytest.raises(NonFiniteLoss, match=r"at step \d+.*lower learning rate"):
        run_experiment("mf-sgd", preset="smoke", sets=["alpha=50"], quiet=True, report=False)
    with pytest.raises(NonFiniteLoss, match=r"at step \d+"):
        run_experiment("collab-dot", preset="smoke", sets=["lr=1e30", "init_std=10"], quiet=True, report=False)


def test_torchrun_ddp_matches_single_process(synthetic_data, tmp_path):
    """Two gloo ranks each take half of every batch; DDP averages gradients -> the same model as one process."""
    base = ["-m", "dldojo", "run", "collab-bias", "--preset", "smoke", "--quiet", "--json", "--seed", "7",
            "--no-report", "--out", str(tmp_path)]
    single = subprocess.run([sys.executable] + base, capture_output=True, text=True, check=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531"]
    ddp = subprocess.run(torchrun + base, capture_output=True, text=True)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    lines = [line for line in ddp.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # only rank 0 reports
    single_metrics = json.loads(single.stdout.splitlines()[-1])["metrics"]
    for key, value in json.loads(lines[0])["metrics"].items():
        assert value == pytest.approx(single_metrics[key], rel=1e-5)


def test_summary_names_the_cpu_and_the_instruction_sets_that_set_its_speed(synthetic_data, tmp_path, monkeypatch):
    facts = run_experiment("collab-bias", preset="smoke", quiet=True, report=False)["facts"]
    assert set(facts["cpu_isa"]) <= set(run_module.SPEED_FLAGS) and "cpu_family_model" in facts
    # "AMD EPYC" is both a Zen 3 (AVX2) and a Zen 4 (AVX512-BF16, ~3x faster here): the flags tell them apart
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n"
                       "flags\t\t: fpu sse avx2 avx512f avx512_bf16 sha_ni\n\n"
                       "processor\t: 1\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\nflags\t\t: fpu\n")
    monkeypatch.setattr(run_module, "CPUINFO", cpuinfo)
    info = run_module.machine_info()
    assert (info["cpu"], info["cpu_family_model"]) == ("AMD EPYC", "25/17")
    assert info["cpu_isa"] == ["avx2", "avx512f", "avx512_bf16"]
    assert run_module.cpu_has_fast_bf16()
    cpuinfo.write_text(cpuinfo.read_text().replace(" avx512f avx512_bf16", ""))
    assert run_module.machine_info()["cpu_isa"] == ["avx2"] and not run_module.cpu_has_fast_bf16()
