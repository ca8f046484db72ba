#!/usr/bin/python3
"""gRPC health of shmbrokerd, from Python and from `shmbroker health`.

grpc.health.v1.Health/Check with service "" and "shmbroker.v1.Broker" (the
two names a health checker may ask; both always agree) over unix:PATH, by a
generic
unary_unary call and hand-encoded protobuf (Debian's python3-grpcio, no
generated code): SERVING (1) while the daemon can allocate, NOT_SERVING (2)
when less than one page of --capacity is free. `shmbroker health` must exit 0
and print SERVING in the first case, exit 1 with one line on stderr in the
second.

Usage: /usr/bin/python3 test_health_python.py [SHMBROKERD]
(env: SHMBROKERD, SHMBROKER_CLI)
"""

import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

from common import (NOT_SERVING, SERVING, Daemon, check, check_eq, grpc_channel,
                    health_status, make_temp_dir, poll_until, run_cli, run_test)

PAGE = os.sysconf("SC_PAGE_SIZE")
NAMES = {SERVING: "SERVING", NOT_SERVING: "NOT_SERVING"}
SERVICES = ("", "shmbroker.v1.Broker")


def body():
    # One holder takes the whole capacity: no per-uid quota below it.
    d = Daemon(["--metrics_address=127.0.0.1:0", "--capacity=1MiB",
                "--max_bytes_per_uid=1MiB"]).start()
    channel = grpc_channel(d.socket)

    def check_cli(expected):
        r = d.cli("health")
        if expected == SERVING:
            check(r.returncode == 0 and r.stdout.strip() == "SERVING",
                  f"`shmbroker health` while SERVING: want exit 0 and 'SERVING' on stdout, got {r}")
        else:
            check(r.returncode == 1,
                  f"`shmbroker health` while NOT_SERVING: want exit 1, got {r}")
            lines = r.stderr.strip().splitlines()
            check(len(lines) == 1,
                  "`shmbroker health` while NOT_SERVING: want one line on stderr, "
                  f"got {r.stderr!r}")
            check(r.stdout.strip() != "SERVING",
                  f"`shmbroker health` printed SERVING but exited 1: {r}")

    def wait_health(expected, why):
        def got():
            for service in SERVICES:
                s = health_status(channel, service)
                if s != expected:
                    return check_eq(NAMES.get(s, s), NAMES[expected],
                                    f"Health/Check status of {service!r}")
            return True
        poll_until(got, timeout=20, what=f"Health/Check to answer {NAMES[expected]} ({why})")
        check_cli(expected)

    for service in SERVICES:
        check_eq(health_status(channel, service), SERVING,
                 f"Health/Check status of {service!r} on a fresh daemon")
    check_cli(SERVING)

    # The brief's scenario: one holder takes the whole capacity.
    full = d.hold("1MiB", label="full", hold="120s")
    wait_health(NOT_SERVING, "a holder has all of --capacity=1MiB")
    r = d.cli("alloc", str(PAGE))
    check_eq(r.returncode, 1, f"exit status of an alloc while full ({r.stderr.strip()!r})")
    full.kill()
    wait_health(SERVING, "the holder of the whole capacity was SIGKILLed")

    # The boundary: exactly one page free still serves; zero does not.
    d.hold(str((1 << 20) - PAGE), label="all_but_a_page", hold="120s")
    for service in SERVICES:
        check_eq(health_status(channel, service), SERVING,
                 f"Health/Check status of {service!r} with exactly one page free")
    check_cli(SERVING)
    last = d.hold(str(PAGE), label="last_page", hold="120s")
    wait_health(NOT_SERVING, "the last page is allocated")
    last.terminate()  # SIGTERM: the CLI releases and exits
    wait_health(SERVING, "the last page was released")

    channel.close()
    d.stop()

    # No daemon at all: exit 1, one line naming the cause.
    nowhere = os.path.join(make_temp_dir(), "no-daemon.sock")
    r = run_cli(nowhere, "health")
    check(r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1,
          f"`shmbroker health` with no daemon: want exit 1 and one stderr line, got {r}")
    return "SERVING / NOT_SERVING (full, one page free, zero free) from Python and the CLI"


if __name__ == "__main__":
    run_test("observability health (python grpc + CLI)", body)
