#!/usr/bin/python3
"""DataLoader throughput: shmbroker.torch.collate against torch's own sharing.

One synthetic dataset, one DataLoader per system (num_workers=2, persistent
workers, spawn), and the main process pulling batches from each in turn,
round after round (A B C, B C A, C A B, ...), so that the machine's noise
falls on all of them. The main process reads one float per 4 KiB page of
every batch, as a training step would read the batch.

- shmbroker: `collate_fn=shmbroker.torch.collate`: each batch is stacked into
  a pooled broker buffer in the worker and reaches the main process as a
  reference; the next batch of that size reuses the same warm pages.
- torch file_descriptor (the default) and file_system: default_collate, the
  workers' sharing strategy set in worker_init_fn.

A round of one system: wait until the other systems' workers are idle
(their prefetch queues refilled, their CPU time no longer moving), take the
batches already prefetched (untimed), then time BATCHES batches, so that
the timed ones are made while the round runs. Reported per system, medians
of the rounds: batches per second, the main process's CPU time per batch
(user + system, all its threads) and its minor page faults per batch, the
workers' CPU and faults per batch, and the CPU per batch of the helper
processes (shmbrokerd; torch_shm_manager for file_system); and
shmbroker's batches per second as a ratio to each torch strategy's, the
median of the rounds' ratios.

Two batch shapes (#13): 64 x 3x224x224 float32 (about 38 MiB) and 256
samples of 4 KiB. Needs Debian's python3-torch: run it with /usr/bin/python3
from the repository, with the package built:

    PYTHONPATH=build/python /usr/bin/python3 bench/torch_dataloader.py --build build

Not a test: nothing runs it automatically (docs/performance.md).
"""

import argparse
import resource
import statistics
import time

import torch
import torch.multiprocessing
from torch.utils.data import DataLoader, Dataset

import shmbroker.torch
from pybench_daemon import cpu_and_faults, spawned_daemon, usage_of_command

SHAPES = {  # batch size, sample shape (float32), timed batches per round
    "38MiB": (64, (3, 224, 224), 20),
    "256x4KiB": (256, (1024,), 100),
}
SYSTEMS = ["shmbroker", "file_descriptor", "file_system"]
NUM_WORKERS, PREFETCH = 2, 2


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
    kwargs = dict(batch_size=batch, num_workers=NUM_WORKERS,
                  persistent_workers=True, multiprocessing_context="spawn",
                  prefetch_factor=PREFETCH)
    dataset = Synthetic(shape, 1 << 30)
    if system == "shmbroker":
        return DataLoader(dataset, collate_fn=shmbroker.torch.collate,
                          **kwargs)
    init = (file_system_worker if system == "file_system"
            else file_descriptor_worker)
    return DataLoader(dataset, worker_init_fn=init, **kwargs)


def main_usage():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_minflt


class System:
    """One DataLoader iterator and the processes whose cost it causes."""

    def __init__(self, name, shape, batch, daemon_pid):
        self.name = name
        self.batches = iter(loader(name, shape, batch))
        # torch internals, for the workers' CPU time: a bench may look.
        self.workers = [w.pid for w in self.batches._workers]
        self.daemon_pid = daemon_pid
        self.samples = {k: [] for k in (
            "rate", "main_ms", "main_faults", "workers_ms", "workers_faults",
            "helpers_ms")}

    def helpers_cpu(self):
        """CPU seconds of the helper processes the systems use: shmbrokerd,
        and file_system's torch_shm_manager(s)."""
        return (cpu_and_faults(self.daemon_pid)[0]
                + usage_of_command("torch_shm_manager")[0])

    def workers_usage(self):
        usage = [cpu_and_faults(pid) for pid in self.workers]
        return sum(u[0] for u in usage), sum(u[1] for u in usage)

    def wait_idle(self, timeout=30.0):
        """Until its workers stop using CPU (prefetch queue full)."""
        end = time.monotonic() + timeout
        last = self.workers_usage()[0]
        while time.monotonic() < end:
            time.sleep(0.2)
            now = self.workers_usage()[0]
            if now - last < 0.005:
                return
            last = now

    def pull(self, count):
        for _ in range(count):
            batch = next(self.batches)
            # One float per 4 KiB page, as a training step reads its batch.
            float(batch.view(-1)[::1024].sum())
            del batch

    def round(self, count):
        self.pull(NUM_WORKERS * PREFETCH)  # made before the round: untimed
        main0, workers0 = main_usage(), self.workers_usage()
        helpers0 = self.helpers_cpu()
        start = time.perf_counter()
        self.pull(count)
        wall = time.perf_counter() - start
        main1, workers1 = main_usage(), self.workers_usage()
        s = self.samples
        s["rate"].append(count / wall)
        s["main_ms"].append(1000 * (main1[0] - main0[0]) / count)
        s["main_faults"].append((main1[1] - main0[1]) / count)
        s["workers_ms"].append(1000 * (workers1[0] - workers0[0]) / count)
        s["workers_faults"].append((workers1[1] - workers0[1]) / count)
        s["helpers_ms"].append(1000 * (self.helpers_cpu() - helpers0) / count)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default="build",
                        help="the build tree with server/shmbrokerd")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batches", type=int, default=None,
                        help="timed, per system, per round (default: 20 of "
                             "38MiB, 100 of 256x4KiB)")
    parser.add_argument("--warmup", type=int, default=16,
                        help="batches per system before the rounds")
    args = parser.parse_args()
    with spawned_daemon(args.build) as daemon:
        print(f"torch {torch.__version__}; num_workers={NUM_WORKERS}, "
              f"prefetch_factor={PREFETCH}; {args.rounds} rounds per shape, "
              f"alternating systems")
        for name in args.shapes.split(","):
            batch, shape, timed = SHAPES[name]
            timed = args.batches or timed
            systems = {s: System(s, shape, batch, daemon.pid)
                       for s in SYSTEMS}
            for s in systems.values():  # workers started, memory warm
                s.pull(args.warmup)
            for r in range(args.rounds):
                order = SYSTEMS[r % 3:] + SYSTEMS[:r % 3]
                for s in order:
                    for other in systems.values():
                        other.wait_idle()
                    systems[s].round(timed)
            print(f"\n{name}, {timed} batches per system and round; medians "
                  f"of the rounds, per batch:")
            print(f"{'':>16} {'batches/s':>10} {'main ms':>8} "
                  f"{'main flt':>9} {'workers ms':>11} {'workers flt':>12} "
                  f"{'helpers ms':>11}")
            for s in SYSTEMS:
                m = {k: statistics.median(v)
                     for k, v in systems[s].samples.items()}
                print(f"{s:>16} {m['rate']:10.1f} {m['main_ms']:8.2f} "
                      f"{m['main_faults']:9.0f} {m['workers_ms']:11.2f} "
                      f"{m['workers_faults']:12.0f} {m['helpers_ms']:11.2f}")
            ours = systems["shmbroker"].samples["rate"]
            for s in SYSTEMS[1:]:
                ratios = [a / b for a, b in
                          zip(ours, systems[s].samples["rate"])]
                print(f"  shmbroker / {s}: {statistics.median(ratios):.2f}x "
                      f"the batches per second (rounds "
                      f"{min(ratios):.2f}-{max(ratios):.2f})", flush=True)
            del systems


if __name__ == "__main__":
    main()
