#!/usr/bin/python3
"""shmbrokerd --log_format=json: structured logs on stderr.

- every stderr line (start to stop) is one JSON object with "time", "level"
  and "msg";
- a client that dies holding a buffer gives an info line whose msg mentions
  the reclaimed buffers (and which names the dead client's pid somewhere);
- a permission denial (our own session releasing another connection's hold)
  is logged, as JSON too;
- at the default level (info) successful calls are not logged: 50 successful
  allocations must not add 50 lines.

Usage: /usr/bin/python3 test_log_format.py [SHMBROKERD]
(env: SHMBROKERD, SHMBROKER_CLI)
"""

import datetime
import json
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

from common import (Daemon, Fatal, FdSession, check, encode_release_request,
                    grpc_channel, grpc_unary, poll_until, run_test)

LEVELS = {"trace", "debug", "info", "warn", "warning", "error", "fatal"}
ALLOCATIONS = 50


def expect(condition, message):
    # Not retried by poll_until: a bad line stays bad.
    if not condition:
        raise Fatal(message)


def parse_line(line, lineno):
    try:
        obj = json.loads(line)
    except ValueError as e:
        expect(False, f"stderr line {lineno} is not JSON ({e}): {line!r}")
    expect(isinstance(obj, dict), f"stderr line {lineno} is JSON but not an object: {line!r}")
    for key in ("time", "level", "msg"):
        expect(key in obj, f"stderr line {lineno} has no {key!r}: {line!r}")
    expect(isinstance(obj["msg"], str) and obj["msg"],
           f"stderr line {lineno}: msg is not a non-empty string: {line!r}")
    expect(isinstance(obj["level"], str) and obj["level"].lower() in LEVELS,
           f"stderr line {lineno}: level {obj['level']!r} is not one of {sorted(LEVELS)}")
    t = obj["time"]
    if isinstance(t, str):
        try:
            datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))
        except ValueError:
            expect(False,
                   f"stderr line {lineno}: time {t!r} is not an ISO 8601 / RFC 3339 timestamp")
    else:
        expect(isinstance(t, (int, float)) and t > 1e9,
               f"stderr line {lineno}: time {t!r} is neither a timestamp string nor epoch seconds")
    return obj


def records(d):
    """The daemon's stderr so far, every complete line parsed."""
    text = d.stderr_text()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif lines:
        lines.pop()  # a line still being written
    return [parse_line(l, i) for i, l in enumerate(lines, 1)]


def death_record(d, pid):
    """Index and record of the info line about reclaiming pid's buffers, or None."""
    for i, r in enumerate(records(d)):
        if (r["level"].lower() == "info" and "reclaim" in r["msg"].lower()
                and str(pid) in json.dumps(r)):
            return i, r
    return None


def body():
    d = Daemon(["--metrics_address=127.0.0.1:0", "--capacity=64MiB",
                "--log_format=json"]).start()
    poll_until(lambda: records(d), timeout=10, what="a first JSON log line (start)")

    victim = d.hold("1MiB", "--name=log-victim", label="victim")
    victim.kill()
    idx, rec = poll_until(lambda: death_record(d, victim.pid), timeout=20,
                          what=f"an info line about reclaiming the buffers of pid {victim.pid}")

    # A permission denial: releasing a hold our connection does not own.
    keeper = d.hold("4KiB", "--name=log-keeper", label="keeper")
    session = FdSession(d.socket)
    channel = grpc_channel(d.socket)
    code, _, details = grpc_unary(channel, "/shmbroker.v1.Broker/Release",
                                  encode_release_request(keeper.handle),
                                  metadata=session.metadata())
    check(code.name == "PERMISSION_DENIED",
          f"Release of another connection's hold: {code} {details}")
    channel.close()
    session.close()

    def denial():
        return [r for r in records(d) if "permission" in json.dumps(r).lower()
                and r["level"].lower() in ("info", "warn", "warning", "error")]

    denial_lines = poll_until(denial, timeout=20, what="a log line about the permission denial")
    before = len(records(d))

    for i in range(ALLOCATIONS):
        d.cli_ok("alloc", "4KiB", f"--name=log-ok-{i}", "--hold=0s")

    # A second death marks the end: everything logged for the 50 calls comes
    # before its line.
    marker = d.hold("4KiB", "--name=log-marker", label="marker")
    marker.kill()
    end, _ = poll_until(lambda: death_record(d, marker.pid), timeout=20,
                        what=f"an info line about reclaiming the buffers of pid {marker.pid}")
    grown = end - before
    check(grown < ALLOCATIONS,
          f"the log grew by {grown} lines over {ALLOCATIONS} successful allocations at the "
          f"default level (successful calls must not be logged):\n" +
          "\n".join(json.dumps(r) for r in records(d)[before:end][:10]))

    d.stop()
    text = d.stderr_text()
    check(text.endswith("\n"), f"stderr does not end with a newline: {text[-200:]!r}")
    all_records = [parse_line(l, i) for i, l in enumerate(text.splitlines(), 1)]
    return (f"{len(all_records)} JSON lines; death line: {rec['msg']!r}; denial line level "
            f"{denial_lines[0]['level']!r}; "
            f"{grown} lines over {ALLOCATIONS} allocations")


if __name__ == "__main__":
    run_test("observability JSON logs", body)
