#!/usr/bin/python3
"""From a daemon restart to every buffer re-adopted (issue 14).

CLIENTS client processes (/usr/bin/python3 with the shmbroker package) hold
BUFFERS buffers between them (pooled 4 KiB ones, the default kind), each
touched. The daemon is SIGKILLed, and a new one started on the same socket
and state directory. Reported per round, from just before the new daemon is
started: when it listens (it has restored its books by then), and when its
metrics say every buffer is back (shmbroker_restore_awaiting_buffers 0 and
shmbroker_restore_buffers_total{result="readopted"} = BUFFERS), the clients
having noticed the death, reconnected, presented their fds and resumed.

    PYTHONPATH=build/python /usr/bin/python3 bench/restart_readopt.py --build build

Not a test: nothing runs it automatically (docs/performance.md).
"""

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

CLIENT = """
import sys, shmbroker
client = shmbroker.Client()
held = [client.allocate(4096) for _ in range(int(sys.argv[1]))]
for b in held:
    memoryview(b)[0] = 1
print("ready", flush=True)
sys.stdin.read()
"""


def start_daemon(build, socket):
    daemon = subprocess.Popen(
        [os.path.join(build, "server", "shmbrokerd"), f"--socket={socket}",
         "--metrics_address=127.0.0.1:0", "--capacity=8GiB",
         "--max_buffers=200000", "--max_buffers_per_uid=200000"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = None
    for line in daemon.stdout:
        if m := re.search(r"metrics on http://[^:]+:(\d+)/", line):
            port = int(m.group(1))
        if "listening on" in line:
            return daemon, port
    raise RuntimeError("shmbrokerd did not start")


def metric(port, name, labels=""):
    text = urllib.request.urlopen(
        f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def round_once(build, clients, buffers):
    tmp = tempfile.mkdtemp(prefix="shmbroker-readopt.")
    socket = os.path.join(tmp, "broker.sock")
    env = dict(os.environ, SHMBROKER_SOCKET=socket)
    daemon, _ = start_daemon(build, socket)
    procs = []
    try:
        for i in range(clients):
            n = buffers // clients + (1 if i < buffers % clients else 0)
            procs.append(subprocess.Popen(
                ["/usr/bin/python3", "-c", CLIENT, str(n)], env=env,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for p in procs:
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError("a client did not get its buffers")
        daemon.kill()
        daemon.wait()
        start = time.monotonic()
        daemon, port = start_daemon(build, socket)
        listening = time.monotonic() - start
        deadline = start + 120
        while time.monotonic() < deadline:
            if (metric(port, "shmbroker_restore_awaiting_buffers") == 0 and
                    metric(port, "shmbroker_restore_buffers_total",
                           '{result="readopted"}') >= buffers):
                return listening, time.monotonic() - start
            time.sleep(0.005)
        raise RuntimeError("not every buffer was re-adopted within 120 s")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        daemon.send_signal(signal.SIGINT)
        daemon.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default="build")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--buffers", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = [round_once(args.build, args.clients, args.buffers)
               for _ in range(args.rounds)]
    for listening, done in results:
        print(f"listening after {listening * 1e3:.0f} ms, "
              f"all {args.buffers} buffers re-adopted after {done * 1e3:.0f} ms")
    print(f"median: listening {statistics.median(r[0] for r in results) * 1e3:.0f} ms, "
          f"re-adopted {statistics.median(r[1] for r in results) * 1e3:.0f} ms "
          f"({args.clients} clients)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
