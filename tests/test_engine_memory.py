"""engine.memory: with keep_freed_memory(), repeated training steps stop page-faulting their activations."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dldojo.engine import memory

# A training step whose activations (256×16×64×64 fp32 = 64 MiB each) are above glibc's largest mmap
# threshold (32 MiB); prints the minor page faults of steps 4-6, after the heap has grown to its size.
STEPS = """
import resource, torch
from dldojo.engine.memory import keep_freed_memory
print(keep_freed_memory())
torch.set_num_threads(1)
conv, x = torch.nn.Conv2d(16, 16, 3, padding=1), torch.randn(256, 16, 64, 64)
def step():
    conv(x).relu().sum().backward()
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(malloc: str) -> tuple[str, int]:
    env = {**os.environ, "DLDOJO_MALLOC": malloc}
    out = subprocess.run([sys.executable, "-c", STEPS], env=env, capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_training_steps_reuse_their_memory_once_freed_memory_is_kept():
    applied, kept = _faults("")
    default_applied, default = _faults("system")
    assert (applied, default_applied) == ("True", "False")
    assert default > 3 * 16384  # glibc's default: each step faults its 64 MiB maps in again (16,384 pages each)
    assert kept < default / 10


def test_opt_out_is_respected(monkeypatch):
    monkeypatch.setattr(memory, "_applied", None)
    monkeypatch.setenv("DLDOJO_MALLOC", "system")
    assert memory.keep_freed_memory() is False
