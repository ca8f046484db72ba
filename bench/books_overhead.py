#!/usr/bin/python3
"""What keeping the books costs the hot path (issue 14's target: Allocate +
Release / Ping rises by 5 % at most).

Two daemons run side by side, one keeping its books in a state directory
(the default) and one with --state_dir=none. shmbroker-bench measures
Ping and alloc_release (Allocate, then a one-way release: two booked
changes and a hold each way) against each in turn, A B A B, and each
round's alloc_release / Ping ratio is compared between the two: a ratio of
ratios, so the machine's noise cancels as far as it can.

  /usr/bin/python3 bench/books_overhead.py --build build --rounds 6
"""

import argparse
import json
import os
import statistics
import subprocess

from pybench_daemon import spawned_daemon


def ratio(bench, socket, seconds, size):
    out = subprocess.run(
        [bench, f"--socket={socket}", "--modes=ping,alloc_release",
         "--rounds=1", f"--duration={seconds}s", "--warmup=0.3s",
         f"--size={size}", "--json"],
        check=True, capture_output=True, text=True).stdout
    modes = {m["mode"]: m for m in json.loads(out)["modes"]}
    return modes["alloc_release"]["p50_us"] / modes["ping"]["p50_us"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default="build")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--size", default="4096")
    args = parser.parse_args()
    bench = os.path.join(args.build, "bench", "shmbroker-bench")
    with spawned_daemon(args.build) as books, \
            spawned_daemon(args.build, "--state_dir=none") as none:
        with_books, without = [], []
        for _ in range(args.rounds):
            with_books.append(ratio(bench, books.socket, args.seconds,
                                    args.size))
            without.append(ratio(bench, none.socket, args.seconds, args.size))
    rises = [a / b for a, b in zip(with_books, without)]
    print(f"alloc_release/ping with books:    "
          f"{' '.join(f'{r:.3f}' for r in with_books)}")
    print(f"alloc_release/ping without books: "
          f"{' '.join(f'{r:.3f}' for r in without)}")
    print(f"with / without, per round: {' '.join(f'{r:.3f}' for r in rises)}")
    print(f"median: {statistics.median(rises):.3f} "
          f"(the target is at most 1.05)")


if __name__ == "__main__":
    main()
