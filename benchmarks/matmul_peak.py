"""Measure this machine's matmul throughput (GFLOP/s) in fp32 and bf16, for MFU estimates.

    python benchmarks/matmul_peak.py                 # 1 and 2 threads, square + transformer-shaped
    python benchmarks/matmul_peak.py --threads 2 --json

A matmul (M, K) @ (K, N) costs 2·M·K·N floating-point operations. The "peak" reported is the best
rate over a few square sizes (large enough to be compute-bound); the transformer-shaped rows show what
the model's own layer shapes reach (tokens × d_model @ d_model × d_ff, and the vocabulary projection).
Run under the CPU lock: `flock /tmp/dldojo-cpu.lock python benchmarks/matmul_peak.py`.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

SQUARE = (512, 1024, 2048)
# (M, K, N): token rows x d_model -> d_ff etc. for d_model 256 / d_ff 1024, ~4k tokens per batch
MODEL_SHAPES = ((4096, 256, 256), (4096, 256, 1024), (4096, 1024, 256), (4096, 256, 8000))


def gflops(m: int, k: int, n: int, dtype: torch.dtype, min_seconds: float = 0.6) -> float:
    a = torch.randn(m, k).to(dtype)
    b = torch.randn(k, n).to(dtype)
    for _ in range(3):
        a @ b
    reps, start = 0, time.perf_counter()
    while True:
        a @ b
        reps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and reps >= 3:
            break
    return 2 * m * k * n * reps / elapsed / 1e9


def measure(threads: int) -> dict:
    torch.set_num_threads(threads)
    result = {"threads": threads}
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        square = {s: gflops(s, s, s, dtype) for s in SQUARE}
        result[f"{name}_peak_gflops"] = max(square.values())
        result[f"{name}_square"] = {str(k): round(v, 1) for k, v in square.items()}
        result[f"{name}_model_shapes"] = {"x".join(map(str, s)): round(gflops(*s, dtype), 1) for s in MODEL_SHAPES}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [measure(t) for t in args.threads]
    if args.json:
        print(json.dumps(results))
        return
    print(f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}")
    for r in results:
        print(f"threads {r['threads']}: peak fp32 {r['fp32_peak_gflops']:.1f} GFLOP/s, "
              f"bf16 {r['bf16_peak_gflops']:.1f} GFLOP/s")
        for name in ("fp32", "bf16"):
            print(f"  {name} square {r[f'{name}_square']}")
            print(f"  {name} model shapes {r[f'{name}_model_shapes']}")


if __name__ == "__main__":
    main()
