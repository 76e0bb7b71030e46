"""engine.memory: after keep_freed_memory(), a freed large tensor's pages are reused, not faulted in again."""

from __future__ import annotations

import resource
import sys

import pytest
import torch

from dldojo.engine import memory


def _faults_to_fill(numel: int) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(numel, dtype=torch.float32)  # allocated, written, freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_large_blocks_are_kept_after_keep_freed_memory(monkeypatch):
    monkeypatch.delenv("DLDOJO_MALLOC", raising=False)
    assert memory.keep_freed_memory() is True
    numel = 64 * 2**20 // 4  # 64 MiB: above glibc's largest mmap threshold (32 MiB)
    _faults_to_fill(numel)  # the first time the heap grows: faults are expected
    pages = numel * 4 // resource.getpagesize()
    assert _faults_to_fill(numel) < pages // 20  # the second time the same memory is reused


def test_opt_out_is_respected(monkeypatch):
    monkeypatch.setattr(memory, "_applied", None)
    monkeypatch.setenv("DLDOJO_MALLOC", "system")
    assert memory.keep_freed_memory() is False
