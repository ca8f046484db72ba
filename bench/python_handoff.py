#!/usr/bin/python3
"""Python handoff: the shmbroker Python client against torch.multiprocessing.

One handoff is the round trip a Python user pays to hand SIZE bytes from a
producer process to a consumer process: create the memory, fill every byte,
hand it over, map it in the consumer, read every page there, ack on a pipe.
The producer is this process, the consumers are processes of their own
(spawned once, kept across rounds); every system is timed the same way, in
the same run, alternating A B C D E A B C D E so that the machine's noise
falls on all of them. The times are the producer's, from the allocation to
the ack.

shmbroker, through the Python package (python/shmbroker):
- `attach`: the producer allocates a named buffer (kind left to the daemon:
  pooled up to --pooled_max_size, 16 MiB by default, else dedicated), fills
  it through a torch view and seals it; the consumer is already blocked in
  `Client.attach(name, wait=..., sealed=True)` and gets it as soon as it is
  sealed (a dedicated buffer is filled by `Buffer.write` from a bytes
  object of the right size made beforehand: one that has had views cannot
  be sealed). Buffers are numbered in step on both sides (PREFIX-0, PREFIX-1,
  ...), so the consumer knows the next name before it exists.
- `attach pooled`: the same with `kind="pooled"` (a 64 MiB buffer gets an
  arena of its own that the next one reuses warm).
- `queue`: what `shmbroker.torch.collate` does for a DataLoader batch: a
  pooled buffer, a tensor over it, put on a torch.multiprocessing queue; the
  pickle carries a reference (shmbroker._pickling: a transfer lease and a
  second hold), the consumer's unpickling attaches the same pages.
All three pass `uninitialized=True`: the producer writes every byte.

torch, `file_system` and `file_descriptor`: the producer makes a tensor in
shared memory as DataLoader's collate does (`UntypedStorage._new_shared`),
fills it and puts it on a torch.multiprocessing queue; the consumer reads
every page and acks.

Needs Debian's python3-torch and the built package:

    PYTHONPATH=build/python /usr/bin/python3 bench/python_handoff.py --build build

Not a test: nothing runs it automatically (docs/performance.md).
"""

import argparse
import statistics
import time

import torch
import torch.multiprocessing as tmp

import shmbroker
import shmbroker.torch
from pybench_daemon import parse_size, spawned_daemon

FILL = 0x5A
PAGE = 4096


def check_pages(tensor):
    """Reads every page of a uint8 tensor; True if all carry FILL."""
    return int(tensor[::PAGE].min()) == FILL


def attach_consumer(prefix, ack):
    client = shmbroker.Client()
    ack.send_bytes(b"R")
    index = 0
    while True:
        buffer = client.attach(f"{prefix}-{index}", wait=3600, sealed=True)
        ok = check_pages(shmbroker.torch.tensor(buffer))
        buffer.release()
        ack.send_bytes(b"A" if ok else b"E")
        index += 1


def queue_consumer(strategy, queue, ack):
    if strategy:
        tmp.set_sharing_strategy(strategy)
    ack.send_bytes(b"R")
    while True:
        tensor = queue.get()
        ok = check_pages(tensor)
        del tensor
        ack.send_bytes(b"A" if ok else b"E")


class Peer:
    """One system: its consumer process, and the producer's side of a
    handoff in this process."""

    def __init__(self, ctx, system, client):
        self.system, self.client, self.index = system, client, 0
        self.source = b""
        self.acks, ack_out = ctx.Pipe(duplex=False)
        self.prefix = f"pyhandoff-{system.replace(' ', '-')}"
        if system.startswith("shmbroker attach"):
            target, args = attach_consumer, (self.prefix, ack_out)
        else:
            self.strategy = (system.split()[1] if system.startswith("torch")
                             else None)
            self.queue = ctx.Queue()
            target, args = queue_consumer, (self.strategy, self.queue, ack_out)
        self.process = ctx.Process(target=target, args=args, daemon=True)
        self.process.start()
        if self.acks.recv_bytes() != b"R":
            raise RuntimeError(f"{system}: the consumer did not start")

    def handoff(self, size):
        if self.system.startswith("shmbroker attach"):
            kind = "pooled" if self.system.endswith("pooled") else "auto"
            buffer = self.client.allocate(
                size, name=f"{self.prefix}-{self.index}", kind=kind,
                uninitialized=True)
            self.index += 1
            if buffer.kind == "dedicated":
                # A dedicated buffer that has had views cannot be sealed (the
                # seal maps it again read-only): fill it by Buffer.write.
                if len(self.source) != size:
                    self.source = bytes([FILL]) * size
                buffer.write(self.source)
            else:
                shmbroker.torch.tensor(buffer).fill_(FILL)
            buffer.seal()
            self.ack()
            buffer.release()
        elif self.system == "shmbroker queue":
            buffer = self.client.allocate(size, kind="pooled",
                                          uninitialized=True)
            tensor = shmbroker.torch.tensor(buffer)
            tensor.fill_(FILL)
            self.queue.put(tensor)
            self.ack()
            del tensor
            buffer.release()
        else:
            tmp.set_sharing_strategy(self.strategy)
            storage = torch.UntypedStorage._new_shared(size)
            tensor = torch.tensor((), dtype=torch.uint8).set_(storage)
            tensor.fill_(FILL)
            self.queue.put(tensor)
            self.ack()
            del tensor, storage

    def ack(self):
        if self.acks.recv_bytes() != b"A":
            raise RuntimeError(f"{self.system}: the consumer failed")

    def run(self, size, seconds, at_least=3):
        """Handoffs for `seconds` (at least `at_least`); their times, us."""
        times = []
        end = time.monotonic() + seconds
        while time.monotonic() < end or len(times) < at_least:
            start = time.perf_counter_ns()
            self.handoff(size)
            times.append((time.perf_counter_ns() - start) / 1000)
        return times

    def close(self):
        self.process.kill()
        self.process.join(timeout=10)


SYSTEMS = ["shmbroker attach", "shmbroker attach pooled", "shmbroker queue",
           "torch file_system", "torch file_descriptor"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default="build",
                        help="the build tree with server/shmbrokerd")
    parser.add_argument("--sizes", default="4KiB,1MiB,64MiB")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.5,
                        help="per system, per round, per size")
    args = parser.parse_args()
    ctx = tmp.get_context("spawn")
    with spawned_daemon(args.build):
        client = shmbroker.Client()
        peers = {s: Peer(ctx, s, client) for s in SYSTEMS}
        for peer in peers.values():  # first shares, torch_shm_manager
            peer.run(PAGE, 0, at_least=5)
        ours = [s for s in SYSTEMS if s.startswith("shmbroker")]
        theirs = [s for s in SYSTEMS if s.startswith("torch")]
        print(f"torch {torch.__version__}; {args.rounds} rounds of "
              f"{args.seconds}s per system and size, alternating")
        for text in args.sizes.split(","):
            size = parse_size(text)
            for peer in peers.values():  # each size's first buffers
                peer.run(size, 0, at_least=2)
            medians = {s: [] for s in SYSTEMS}
            count = {s: 0 for s in SYSTEMS}
            for _ in range(args.rounds):
                for s in SYSTEMS:
                    times = peers[s].run(size, args.seconds)
                    medians[s].append(statistics.median(times))
                    count[s] += len(times)
            ratio = {(a, b): statistics.median(
                x / y for x, y in zip(medians[a], medians[b]))
                for a in ours for b in theirs}
            spread = {k: (min(x / y for x, y in zip(medians[k[0]],
                                                     medians[k[1]])),
                          max(x / y for x, y in zip(medians[k[0]],
                                                     medians[k[1]])))
                      for k in ratio}
            print(f"\n{text}: median handoff us (median of the rounds' "
                  f"medians; handoffs timed)")
            for s in SYSTEMS:
                print(f"  {s:>24} {statistics.median(medians[s]):>12.1f} "
                      f"({count[s]})")
            print("  shmbroker / torch, median of the rounds' ratios "
                  "(below 1: shmbroker is faster) [rounds' range]:")
            for (a, b), r in ratio.items():
                low, high = spread[(a, b)]
                print(f"  {a:>24} / {b:<21} {r:6.3f} [{low:.3f}-{high:.3f}]",
                      flush=True)
        client.close()
        for peer in peers.values():
            peer.close()


if __name__ == "__main__":
    main()
