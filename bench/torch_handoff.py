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
a ratio to each torch strategy's (below 1: shmbroker is faster), for the
kind the daemon picks (`handoff`: pooled up to --pooled_max_size, else
dedicated), for a pooled buffer (`pooled_handoff`: large ones in an arena
of their own, reused warm), and for the daemon's kind asked for
uninitialized (`uninit_handoff`: no zeroing before the producer writes every
byte, as shmbroker.torch.collate asks). Needs
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

from pybench_daemon import state_tmpfs

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


MODES = ["handoff", "pooled_handoff", "uninit_handoff"]


def shmbroker_round(bench, socket, size, seconds):
    """One shmbroker-bench run of MODES, interleaved; their medians."""
    out = subprocess.run(
        [bench, f"--socket={socket}", f"--modes={','.join(MODES)}",
         f"--size={size}", f"--duration={seconds * len(MODES)}s",
         "--rounds=2", "--warmup=0.2s", "--json"],
        check=True, capture_output=True, text=True).stdout
    report = json.loads(out)
    if report.get("errors", 0):
        raise RuntimeError(f"shmbroker-bench: {report.get('first_error')}")
    return {mode["mode"]: mode["p50_us"] for mode in report["modes"]}


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
    tmpdir = tempfile.mkdtemp(prefix="shmbroker-torch-handoff.", dir=state_tmpfs())
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
        systems = [f"shmbroker {m}" for m in MODES] + [
            f"torch {s}" for s in strategies]
        print("median handoff, us:")
        print(f"{'size':>8} " + " ".join(f"{n:>26}" for n in systems))
        ratios_text = []
        for text in args.sizes.split(","):
            size = parse_size(text)
            times = {n: [] for n in systems}
            ratios = {(m, s): [] for m in MODES for s in strategies}
            for _ in range(args.rounds):
                ours = shmbroker_round(bench, socket, text, args.seconds)
                for m in MODES:
                    times[f"shmbroker {m}"].append(ours[m])
                for s in strategies:
                    theirs = statistics.median(peers[s].run(size, args.seconds))
                    times[f"torch {s}"].append(theirs)
                    # Each round measures every system under the same
                    # background: the ratio is the median of the rounds'.
                    for m in MODES:
                        ratios[(m, s)].append(ours[m] / theirs)
            print(f"{text:>8} " + " ".join(
                f"{statistics.median(times[n]):>26.1f}" for n in systems),
                flush=True)
            ratios_text.append(f"{text:>8} " + " ".join(
                f"{statistics.median(ratios[k]):>26.2f}" for k in ratios))
        print("shmbroker / torch (below 1: shmbroker is faster):")
        print(f"{'size':>8} " + " ".join(
            f"{m + ' / ' + s:>26}" for m in MODES for s in strategies))
        print("\n".join(ratios_text))
        for peer in peers.values():
            peer.close()
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
        shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    main()
