#!/usr/bin/python3
"""DataLoader throughput: shmbroker.torch.collate against torch's own sharing.

One synthetic dataset, one DataLoader per system (num_workers=2, persistent
workers, spawn), and the main process pulling batches from each in turn,
round after round (A B C A B C), so that the machine's noise falls on all of
them. The main process reads one float per 4 KiB page of every batch, as a
training step would read the batch. Reported per system: batches per second
and the main process's CPU time per batch (user + system), medians of the
rounds, and shmbroker's as a ratio to each torch strategy's.

- shmbroker: `collate_fn=shmbroker.torch.collate`: each batch is stacked into
  a pooled broker buffer in the worker and reaches the main process as a
  reference; the next batch of that size reuses the same warm pages.
- torch file_descriptor (the default) and file_system: default_collate, the
  workers' sharing strategy set in worker_init_fn.

Two batch shapes (#13): 64 x 3x224x224 float32 (about 38 MiB) and 256
samples of 4 KiB. Needs Debian's python3-torch: run it with /usr/bin/python3
from the repository, with the package built:

    PYTHONPATH=build/python /usr/bin/python3 bench/torch_dataloader.py --build build

Not a test: nothing runs it automatically (docs/performance.md).
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.multiprocessing
from torch.utils.data import DataLoader, Dataset

import shmbroker.torch

SHAPES = {
    "38MiB": (64, (3, 224, 224)),  # batch size, sample shape (float32)
    "256x4KiB": (256, (1024,)),
}


class Synthetic(Dataset):
    def __init__(self, shape, length):
        self.shape, self.length = shape, length

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        return torch.full(self.shape, float(index % 251))


def file_system_worker(_):
    torch.multiprocessing.set_sharing_strategy("file_system")


def file_descriptor_worker(_):
    torch.multiprocessing.set_sharing_strategy("file_descriptor")


def loader(system, shape, batch):
    kwargs = dict(batch_size=batch, num_workers=2, persistent_workers=True,
                  multiprocessing_context="spawn", prefetch_factor=2)
    dataset = Synthetic(shape, 1 << 30)
    if system == "shmbroker":
        return DataLoader(dataset, collate_fn=shmbroker.torch.collate,
                          **kwargs)
    init = (file_system_worker if system == "file_system"
            else file_descriptor_worker)
    return DataLoader(dataset, worker_init_fn=init, **kwargs)


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pull(batches, count):
    """`count` batches; (batches per second, main CPU seconds per batch)."""
    start, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(count):
        batch = next(batches)
        # Read one float per 4 KiB page, as a training step reads its batch.
        float(batch.view(-1)[::1024].sum())
        del batch
    wall = time.perf_counter() - start
    return count / wall, (cpu_seconds() - cpu) / count


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default="build",
                        help="the build tree with server/shmbrokerd")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=20,
                        help="per system, per round")
    args = parser.parse_args()
    tmpdir = tempfile.mkdtemp(prefix="shmbroker-dataloader.")
    socket = os.path.join(tmpdir, "broker.sock")
    daemon = subprocess.Popen(
        [os.path.join(args.build, "server", "shmbrokerd"),
         f"--socket={socket}", "--metrics_address=", "--capacity=8GiB"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    os.environ["SHMBROKER_SOCKET"] = socket  # the spawned workers' too
    systems = ["shmbroker", "file_descriptor", "file_system"]
    try:
        line = daemon.stdout.readline()
        if "listening on" not in line:
            sys.exit(f"shmbrokerd did not start: {line!r}")
        print(f"torch {torch.__version__}; num_workers=2; {args.rounds} rounds "
              f"of {args.batches} batches per system, alternating")
        for name in args.shapes.split(","):
            batch, shape = SHAPES[name]
            iters = {s: iter(loader(s, shape, batch)) for s in systems}
            for s in systems:
                pull(iters[s], 4)  # workers started, memory warm
            rate = {s: [] for s in systems}
            cpu = {s: [] for s in systems}
            for _ in range(args.rounds):
                for s in systems:
                    r, c = pull(iters[s], args.batches)
                    rate[s].append(r)
                    cpu[s].append(c)
            print(f"\n{name}: batches/s, main CPU ms/batch (medians)")
            for s in systems:
                print(f"  {s:>16} {statistics.median(rate[s]):8.1f} "
                      f"{1000 * statistics.median(cpu[s]):8.2f}")
            for s in systems[1:]:
                speedups = [a / b for a, b in zip(rate["shmbroker"], rate[s])]
                print(f"  shmbroker / {s}: {statistics.median(speedups):.2f}x "
                      f"the batches per second (rounds "
                      f"{min(speedups):.2f}-{max(speedups):.2f})")
            del iters
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
        shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    main()
