"""Training images per second of one architecture's step on this machine (random data, no data loading).

    python benchmarks/train_step_speed.py                                   # airbench94, batch 512 and 2000
    python benchmarks/train_step_speed.py --arch resnet20 --batch 256 --optimizer sgd --malloc system

One step = bf16-autocast forward (channels-last) + cross-entropy + backward + optimiser step, as in
`dldojo.vision.classify`. It also prints the step's user and system CPU seconds and minor page faults,
which is how the allocator effect in `dldojo.engine.memory` was found (`--malloc system` leaves glibc's
default, `kept` applies `keep_freed_memory()`; the setting is per process, so compare separate runs).
Run under the CPU lock: `flock /tmp/dldojo-cpu.lock python benchmarks/train_step_speed.py`.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F

from dldojo.engine.memory import keep_freed_memory
from dldojo.vision import archs, classify, common


def measure(arch: str, batch: int, optimizer: str, images: int) -> dict:
    torch.manual_seed(0)
    model = archs.build_arch(arch).to(memory_format=torch.channels_last)
    # the experiment's own optimiser and parameter groups (the default config's rates; step cost does not depend on them)
    opt = classify.make_optimizer(model, classify.ClassifyConfig(arch=arch, optimizer=optimizer))
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    bf16 = common.use_bf16("auto")

    def step():
        with common.autocast(bf16):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(2):  # warm-up: oneDNN primitives, the heap's first growth
        step()
    steps = max(3, images // batch)
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        step()
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    return {"arch": arch, "batch": batch, "optimizer": optimizer, "bf16": bf16,
            "images_per_second": steps * batch / seconds, "user_s": after.ru_utime - before.ru_utime,
            "system_s": after.ru_stime - before.ru_stime, "minor_faults": after.ru_minflt - before.ru_minflt}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="airbench94", help="an architecture of `dldojo archs`")
    parser.add_argument("--batch", type=int, nargs="+", default=[512, 2000], help="batch sizes to time")
    parser.add_argument("--optimizer", choices=("sgd", "muon"), default="sgd")
    parser.add_argument("--malloc", choices=("kept", "system"), default="kept",
                        help="kept: keep freed memory in the process (what `dldojo run` does); system: glibc default")
    parser.add_argument("--images", type=int, default=6000, help="images per timed measurement")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    kept = keep_freed_memory() if args.malloc == "kept" else False
    print(f"threads {torch.get_num_threads()}, malloc keeps freed memory: {kept}")
    for batch in args.batch:
        r = measure(args.arch, batch, args.optimizer, args.images)
        print(f"{r['arch']} batch {batch} {r['optimizer']} bf16={r['bf16']}: {r['images_per_second']:.0f} img/s, "
              f"CPU user {r['user_s']:.1f} s, system {r['system_s']:.1f} s, minor faults {r['minor_faults']}")


if __name__ == "__main__":
    main()
