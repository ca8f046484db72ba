#!/usr/bin/python3
"""Handoff, shmbroker against torch.multiprocessing, alternating round by round.

One handoff is the whole round trip a user pays to hand a buffer of SIZE
bytes from a producer process to a consumer process: create it, fill every
byte, send it, map it in the consumer, read every page, ack. Measured the
same way for each system, in the same run, alternating A B C A B C so that
the machine's noise falls on all of them:

- shmbroker: `shmbroker-bench --modes=handoff` (bench/handoff_peer.h): the
  producer allocates a named buffer, fills and seals it; the consumer, a
  second process already waiting in an Attach with wait, gets it, reads
  every page and acks on a pipe.
- torch file_system and file_descriptor: the producer makes a tensor in
  shared memory (`UntypedStorage._new_shared`, as DataLoader's collate
  does), fills it and puts it on a torch.multiprocessing queue; the
  consumer, a second process blocked in get(), reads every page and acks on
  a pipe.

Prints, per size, the median handoff time of each and shmbroker's time as
a ratio to each torch strategy's (below 1: shmbroker is faster). Needs
Debian's python3-torch, so run it with /usr/bin/python3:

    /usr/bin/python3 bench/torch_handoff.py --build build --sizes 4KiB,1MiB,64MiB

Not a test: nothing runs it automatically (docs/performance.md).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.multiprocessing as tmp

FILL = 0x5A
PAGE = 4096


def parse_size(text):
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(text[: -len(unit)]) * factor
    return int(text)


def torch_consumer(queue, ack):
    while True:
        tensor = queue.get()
        if tensor is None:
            return
        # Read every page, as a consumer of the data would.
        pages = tensor[::PAGE]
        if int(pages.min()) != FILL:
            ack.send_bytes(b"E")
            return
        del pages, tensor
        ack.send_bytes(b"A")


class TorchHandoff:
    """A consumer process for one sharing strategy, kept across rounds."""

    def __init__(self, strategy):
        self.strategy = strategy
        tmp.set_sharing_strategy(strategy)
        ctx = tmp.get_context("fork")
        self.queue = ctx.Queue()
        self.ack_in, ack_out = ctx.Pipe(duplex=False)
        self.process = ctx.Process(
            target=torch_consumer, args=(self.queue, ack_out), daemon=True)
        self.process.start()
        # The first share starts torch_shm_manager (file_system) and the
        # queue's feeder thread: paid once per process, not per handoff.
        self.run(PAGE, 0, at_least=5)

    def run(self, size, seconds, at_least=3):
        """Handoffs for `seconds` (at least `at_least` of them); returns
        their times in microseconds."""
        tmp.set_sharing_strategy(self.strategy)
        times = []
        end = time.monotonic() + seconds
        while time.monotonic() < end or len(times) < at_least:
            start = time.perf_counter_ns()
            storage = torch.UntypedStorage._new_shared(size)
            tensor = torch.tensor((), dtype=torch.uint8).set_(storage)
            tensor.fill_(FILL)
            self.queue.put(tensor)
            reply = self.ack_in.recv_bytes()
            times.append((time.perf_counter_ns() - start) / 1000)
            if reply != b"A":
                raise RuntimeError(f"torch {self.strategy} consumer failed")
            del tensor, storage
        return times

    def close(self):
        self.queue.put(None)
        self.process.join(timeout=10)


def shmbroker_round(bench, socket, size, seconds):
    """One `shmbroker-bench --modes=handoff` run; its median and count."""
    out = subprocess.run(
        [bench, f"--socket={socket}", "--modes=handoff", f"--size={size}",
         f"--duration={seconds}s", "--rounds=1", "--warmup=0.2s", "--json"],
        check=True, capture_output=True, text=True).stdout
    report = json.loads(out)
    mode = report["modes"][0]
    if report.get("errors", 0):
        raise RuntimeError(f"shmbroker-bench: {report.get('first_error')}")
    return mode["p50_us"], mode["ops"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default="build",
                        help="the build tree with server/shmbrokerd and "
                             "bench/shmbroker-bench")
    parser.add_argument("--sizes", default="4KiB,1MiB,64MiB")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="per system, per round, per size")
    args = parser.parse_args()
    daemon_bin = os.path.join(args.build, "server", "shmbrokerd")
    bench = os.path.join(args.build, "bench", "shmbroker-bench")
    tmpdir = tempfile.mkdtemp(prefix="shmbroker-torch-handoff.")
    socket = os.path.join(tmpdir, "broker.sock")
    daemon = subprocess.Popen(
        [daemon_bin, f"--socket={socket}", "--metrics_address=",
         "--capacity=8GiB"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = daemon.stdout.readline()
        if "listening on" not in line:
            sys.exit(f"shmbrokerd did not start: {line!r}")
        strategies = ["file_system", "file_descriptor"]
        peers = {s: TorchHandoff(s) for s in strategies}
        print(f"torch {torch.__version__}; {args.rounds} rounds of "
              f"{args.seconds}s per system and size, alternating")
        print(f"{'size':>8} {'shmbroker us':>13} " +
              " ".join(f"{'torch ' + s + ' us':>26}" for s in strategies) +
              "  " + " ".join(f"{'ratio to ' + s:>26}" for s in strategies))
        for text in args.sizes.split(","):
            size = parse_size(text)
            ours, theirs = [], {s: [] for s in strategies}
            ratios = {s: [] for s in strategies}
            for _ in range(args.rounds):
                p50, _ = shmbroker_round(bench, socket, text, args.seconds)
                ours.append(p50)
                for s in strategies:
                    theirs[s].append(
                        statistics.median(peers[s].run(size, args.seconds)))
                    ratios[s].append(p50 / theirs[s][-1])
            # The ratio is the median of the rounds' ratios: each round
            # measures both systems under the same background.
            row = f"{text:>8} {statistics.median(ours):>13.1f} "
            row += " ".join(f"{statistics.median(theirs[s]):>26.1f}"
                            for s in strategies)
            row += "  " + " ".join(
                f"{statistics.median(ratios[s]):>26.2f}" for s in strategies)
            print(row, flush=True)
        for peer in peers.values():
            peer.close()
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
        shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    main()
