#!/usr/bin/python3
"""Exec -> first shared buffer: a fresh /usr/bin/python3, shmbroker against torch.

How long a new Python process takes from its exec to having its first
shared buffer mapped and touched: the start-up price a short-lived worker
pays. Each sample is a fresh `/usr/bin/python3 -c CODE`; the time runs from
just before the parent starts it (fork + exec included) to the moment the
child has written one byte into every page of SIZE bytes of shared memory
(CLOCK_MONOTONIC, which parent and child share). The systems alternate
sample by sample (A B C D A B C D ...), and each is run once before the
samples so that the files it loads are in the page cache.

- `shmbroker`: `import shmbroker; shmbroker.Client().allocate(SIZE)`, the
  pages touched through a memoryview.
- `torch file_descriptor` (torch's default): `import torch;
  torch.empty(SIZE, dtype=torch.uint8).share_memory_()`, touched.
- `torch file_system`: the same after `set_sharing_strategy("file_system")`,
  whose first share starts torch_shm_manager.
- `torch + shmbroker`: `import torch, shmbroker.torch` then the shmbroker
  allocation: what a process that uses torch anyway (a DataLoader worker)
  pays for the broker.
- `python3 alone`: the interpreter's own start-up, for scale.

    PYTHONPATH=build/python /usr/bin/python3 bench/python_first_buffer.py --build build

Not a test: nothing runs it automatically (docs/performance.md).
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

from pybench_daemon import parse_size, spawned_daemon

PYTHON = "/usr/bin/python3"

SHMBROKER = """
import shmbroker
buf = shmbroker.Client().allocate(SIZE)
view = memoryview(buf)
for i in range(0, SIZE, 4096):
    view[i] = 1
"""

TORCH = """
import torch
STRATEGY
t = torch.empty(SIZE, dtype=torch.uint8).share_memory_()
t[::4096] = 1
"""

TORCH_SHMBROKER = """
import torch
import shmbroker.torch
buf = shmbroker.Client().allocate(SIZE)
shmbroker.torch.tensor(buf)[::4096] = 1
"""

DONE = """
import time
print(time.clock_gettime_ns(time.CLOCK_MONOTONIC), flush=True)
"""


def programs(size):
    set_fs = ("import torch.multiprocessing; "
              "torch.multiprocessing.set_sharing_strategy('file_system')")
    code = {
        "python3 alone": "",
        "shmbroker": SHMBROKER,
        "torch file_descriptor": TORCH.replace("STRATEGY", ""),
        "torch file_system": TORCH.replace("STRATEGY", set_fs),
        "torch + shmbroker": TORCH_SHMBROKER,
    }
    return {k: v.replace("SIZE", str(size)) + DONE for k, v in code.items()}


def sample(code):
    """Milliseconds from just before the exec to the child's last touch."""
    start = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    out = subprocess.run([PYTHON, "-c", code], check=True,
                         capture_output=True, text=True).stdout
    return (int(out.split()[-1]) - start) / 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default="build",
                        help="the build tree with server/shmbrokerd")
    parser.add_argument("--size", default="1MiB")
    parser.add_argument("--samples", type=int, default=15,
                        help="per system, alternating")
    args = parser.parse_args()
    if "PYTHONPATH" not in os.environ:
        os.environ["PYTHONPATH"] = os.path.join(args.build, "python")
    code = programs(parse_size(args.size))
    with spawned_daemon(args.build):
        for program in code.values():  # page cache, torch_shm_manager's
            sample(program)
        times = {name: [] for name in code}
        for _ in range(args.samples):
            for name, program in code.items():
                times[name].append(sample(program))
        base = times["torch file_descriptor"]
        print(f"exec -> first {args.size} shared buffer mapped and touched, "
              f"ms; {args.samples} samples each, alternating")
        print(f"{'':>24} {'median':>8} {'min':>8} {'max':>8} "
              f"{'/ torch fd':>11}")
        for name, t in times.items():
            ratio = statistics.median(a / b for a, b in zip(t, base))
            print(f"{name:>24} {statistics.median(t):8.1f} {min(t):8.1f} "
                  f"{max(t):8.1f} {ratio:11.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
