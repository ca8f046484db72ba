#!/usr/bin/python3
"""The daemon's memory per live buffer, and what it gives back once they go.

A client process allocates N pooled 1 KiB buffers and holds them. The
daemon's RssAnon (its own heap: the records of buffers, holds and leases;
not the arenas' pages, which are shared memory) is read before the client
starts, with the N buffers live, and after the client is SIGKILLed and the
daemon has reclaimed every buffer. Prints RssAnon per live buffer, and
RssAnon after the reclaim as a difference from before. Not a test
(docs/performance.md, "Memory per buffer"):

    PYTHONPATH=build/python /usr/bin/python3 bench/rss_reclaim.py --build build --buffers 100000
"""
import argparse
import os
import signal
import subprocess
import sys
import time

import shmbroker
from pybench_daemon import spawned_daemon

HOLDER = """
import sys, shmbroker
client = shmbroker.Client()
held = [client.allocate(1024, kind="pooled", uninitialized=True)
        for _ in range(int(sys.argv[1]))]
print("ready", flush=True)
sys.stdin.read()
"""


def rss_anon_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise RuntimeError(f"no RssAnon for pid {pid}")


def wait_until(what, predicate, seconds=120):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default="build")
    parser.add_argument("--buffers", type=int, default=100000)
    args = parser.parse_args()
    n = args.buffers
    limits = [f"--max_buffers={2 * n}", f"--max_buffers_per_uid={2 * n}",
              f"--max_holds_per_lease={2 * n}"]
    with spawned_daemon(args.build, *limits) as daemon:
        observer = shmbroker.Client()
        observer.status()  # the daemon has served a client once
        before = rss_anon_kib(daemon.pid)
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(n)],
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        if holder.stdout.readline().strip() != "ready":
            raise RuntimeError("the holder did not allocate its buffers")
        live = rss_anon_kib(daemon.pid)
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        wait_until("every buffer reclaimed",
                   lambda: observer.status().buffers == 0)
        time.sleep(0.5)  # the trim runs just after the reclaim Status shows
        after = rss_anon_kib(daemon.pid)
    print(f"buffers {n}: daemon RssAnon before {before} KiB, with them live "
          f"{live} KiB ({(live - before) * 1024 / n:.0f} B per buffer), "
          f"after the reclaim {after} KiB ({after - before:+d} KiB)")


if __name__ == "__main__":
    main()
