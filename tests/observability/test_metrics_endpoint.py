#!/usr/bin/python3
"""/metrics of a live shmbrokerd after real client traffic.

Starts the daemon with --metrics_address=127.0.0.1:0 --capacity=64MiB, drives
it with real CLI processes (holders, a posix buffer, an over-capacity
allocation, a taken name, attaches, a SIGKILLed holder) and one raw session
of our own (a Release of someone else's hold: PERMISSION_DENIED without a
second uid; an Allocate of size 0: INVALID_ARGUMENT; a protocol error on the
fd channel), then checks the exported values, the exposition's structure,
and `promtool check metrics`. Also: --metrics_address= (empty) disables the
endpoint.

Usage: /usr/bin/python3 test_metrics_endpoint.py [SHMBROKERD]
(env: SHMBROKERD, SHMBROKER_CLI)
"""

import math
import os
import re
import urllib.parse
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

from common import (ALLOWED_FOREIGN_FAMILIES, CONTRACT_FAMILIES, Daemon, FdSession, check,
                    check_eq, check_ge,
                    check_histogram, encode_release_request, fail, family_of, grpc_channel,
                    grpc_unary, http_get, import_grpc, poll_until, promtool_check_metrics,
                    run_test)

MiB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")


def charged(size):
    return -(-size // PAGE) * PAGE


def structure_problems(expo):
    """Every family has HELP and TYPE and the shmbroker_ prefix, the
    contract's families exist with their types, every sample belongs to a
    declared family, label values are from the contract. Returns a list."""
    problems = []
    for name, typ in CONTRACT_FAMILIES.items():
        if name not in expo.types:
            problems.append(f"family {name} ({typ}) has no '# TYPE' line")
        elif expo.types[name] != typ:
            problems.append(f"family {name}: TYPE {expo.types[name]}, expected {typ}")
    for name, typ in sorted(expo.types.items()):
        if not name.startswith("shmbroker_") and name not in ALLOWED_FOREIGN_FAMILIES:
            problems.append(f"family {name} ({typ}) lacks the shmbroker_ prefix")
        if not expo.helps.get(name, "").strip():
            problems.append(f"family {name} has no (or an empty) '# HELP' line")
    for key, v in sorted(expo.samples.items(), key=lambda kv: kv[0][0]):
        fam = family_of(key[0], expo.types)
        if fam is None:
            problems.append(f"sample {key[0]} belongs to no family declared with '# TYPE'")
        elif (fam.startswith("shmbroker_") and math.isnan(v)):
            problems.append(f"sample {key[0]}{dict(key[1])} is NaN")
    for labels in expo.select("shmbroker_allocations_total"):
        result = dict(labels).get("result")
        if result is None or not re.fullmatch(r"[a-z_]+", result):
            problems.append(f"shmbroker_allocations_total: result={result!r} is not 'ok' or a "
                            "lower-case gRPC code name")
    for fam in ("shmbroker_releases_total", "shmbroker_reclaims_total",
                "shmbroker_reclaimed_bytes_total"):
        for labels in expo.select(fam):
            if dict(labels).get("reason") not in RECLAIM_REASONS:
                problems.append(f"{fam}: unexpected labels {dict(labels)}")
    for labels in expo.select("shmbroker_leases_ended_total"):
        if dict(labels).get("reason") not in LEASE_END_REASONS:
            problems.append(f"shmbroker_leases_ended_total: unexpected labels {dict(labels)}")
    for fam in ("shmbroker_leases", "shmbroker_leases_granted_total"):
        for labels in expo.select(fam):
            if dict(labels).get("detached") not in ("true", "false"):
                problems.append(f"{fam}: unexpected labels {dict(labels)}")
    for labels in expo.select("shmbroker_client_connections_closed_total"):
        if dict(labels).get("reason") not in CLOSE_REASONS:
            problems.append(f"shmbroker_client_connections_closed_total: unexpected labels "
                            f"{dict(labels)}")
    for labels in expo.select("shmbroker_buffers"):
        d = dict(labels)
        if (d.get("backing"), d.get("kind")) not in (("memfd", "dedicated"),
                                                      ("posix", "dedicated"),
                                                      ("memfd", "pooled")):
            problems.append(f"shmbroker_buffers: unexpected labels {d}")
    return problems


RECLAIM_REASONS = ("release", "client_closed", "lease_expired", "lease_revoked", "shutdown",
                   "not_resumed")
LEASE_END_REASONS = ("client_closed", "lease_expired", "lease_revoked", "shutdown",
                     "not_resumed")
CLOSE_REASONS = ("hangup", "protocol_error", "lease_ended", "shutdown")


def body():
    uid = str(os.getuid())
    # Dedicated buffers only, so that every byte figure below is exact pages
    # (pooled buffers' metrics are checked by test_pool_metrics.py).
    d = Daemon(["--metrics_address=127.0.0.1:0", "--capacity=64MiB",
                "--pooling=false"]).start()
    url = urllib.parse.urlsplit(d.metrics_url)
    check_eq(url.hostname, "127.0.0.1", "host in the metrics URL")

    headers, text = http_get(d.metrics_url)
    ctype = headers.get("Content-Type", "")
    check(ctype.startswith("text/plain"),
          f"/metrics Content-Type: expected text/plain (version=0.0.4), got {ctype!r}")

    # --- fresh daemon -----------------------------------------------------
    version = d.status()["version"]
    e0 = d.scrape()
    check_eq(e0.value("shmbroker_capacity_bytes"), 64 * MiB, "shmbroker_capacity_bytes")
    check_eq(e0.value("shmbroker_allocated_bytes"), 0, "shmbroker_allocated_bytes at start")
    check_eq(e0.value("shmbroker_holds"), 0, "shmbroker_holds at start")
    check_eq(e0.value("shmbroker_client_connections"), 0, "shmbroker_client_connections at start")
    check_eq(e0.value("shmbroker_build_info", version=version), 1,
             f"shmbroker_build_info{{version=\"{version}\"}} (version from `status --json`)")
    # docs/metrics.md: the series of known label values exist from the start, at 0.
    for fam, label, values in (
            ("shmbroker_releases_total", "reason", RECLAIM_REASONS),
            ("shmbroker_reclaims_total", "reason", RECLAIM_REASONS),
            ("shmbroker_reclaimed_bytes_total", "reason", RECLAIM_REASONS),
            ("shmbroker_client_connections_closed_total", "reason", CLOSE_REASONS),
            ("shmbroker_leases_ended_total", "reason", LEASE_END_REASONS),
            ("shmbroker_leases_granted_total", "detached", ("true", "false")),
            ("shmbroker_leases", "detached", ("true", "false")),
            ("shmbroker_buffers", "backing", ("memfd", "posix"))):
        for v in values:
            extra = {"kind": "dedicated"} if fam == "shmbroker_buffers" else {}
            check_eq(e0.get(fam, **{label: v}, **extra), 0,
                     f'{fam}{{{label}="{v}"}} on a fresh daemon (must exist, at 0)')
    for fam in ("shmbroker_client_deaths_total", "shmbroker_client_connections_opened_total",
                "shmbroker_reclaim_latency_seconds_count", "shmbroker_keepalives_total",
                "shmbroker_lease_expiry_reclaim_latency_seconds_count"):
        check_eq(e0.get(fam), 0, f"{fam} on a fresh daemon (must exist, at 0)")
    check(e0.value("shmbroker_open_fds") > 0, "shmbroker_open_fds must be > 0")
    check_ge(e0.value("shmbroker_max_fds"), e0.value("shmbroker_open_fds"),
             "shmbroker_max_fds (vs shmbroker_open_fds)")

    # --- traffic ------------------------------------------------------------
    odd_size = PAGE + 904  # not a whole number of pages: charged 2 pages
    m1 = d.hold("1MiB", "--name=obs-m1", label="m1")
    d.hold("1MiB", "--name=obs-m2", label="m2")
    victim = d.hold("1MiB", "--name=obs-victim", label="victim")
    d.hold("2MiB", "--name=obs-px", "--backing=posix", label="px")
    d.hold(str(odd_size), "--name=obs-odd", label="odd")
    allocations_ok = 5

    r = d.cli("alloc", "128MiB")
    check_eq(r.returncode, 1, f"exit status of an over-capacity alloc ({r.stderr.strip()!r})")
    r = d.cli("alloc", "4KiB", "--name=obs-m1")
    check_eq(r.returncode, 1, f"exit status of an alloc with a taken name ({r.stderr.strip()!r})")
    r = d.cli("cat", "obs-no-such-buffer")
    check_eq(r.returncode, 1, f"exit status of cat of a missing buffer ({r.stderr.strip()!r})")
    r = d.cli("cat", "obs-odd")
    check_eq((r.returncode, len(r.stdout)), (0, odd_size),
             f"cat obs-odd (exit status, bytes out); stderr {r.stderr.strip()!r}")
    # The only memory touched so far: `cat` mapped obs-odd and read both its
    # pages, and a read fault on shared memory allocates the page (tmpfs has
    # no shared zero page). The alloc holders never touched theirs.
    touched = charged(odd_size)
    d.cli_ok("alloc", "4KiB", "--name=obs-short", "--hold=0s")
    allocations_ok += 1

    # A client connection of our own releasing m1's hold, which it does not own.
    grpc = import_grpc()
    session = FdSession(d.socket)
    channel = grpc_channel(d.socket)
    code, _, details = grpc_unary(channel, "/shmbroker.v1.Broker/Release",
                                  encode_release_request(m1.handle), metadata=session.metadata())
    check_eq(code, grpc.StatusCode.PERMISSION_DENIED,
             f"Release of another connection's hold (details {details!r})")
    # An Allocate of size 0 (empty AllocateRequest): INVALID_ARGUMENT.
    code, _, details = grpc_unary(channel, "/shmbroker.v1.Broker/Allocate", b"",
                                  metadata=session.metadata())
    check_eq(code, grpc.StatusCode.INVALID_ARGUMENT, f"Allocate of size 0 (details {details!r})")
    channel.close()
    session.close()

    # A client connection that breaks the fd-channel protocol: the daemon
    # answers kError and closes it.
    bad = FdSession(d.socket)
    bad.sock.send(b"not a frame")
    try:
        while bad.sock.recv(4096):
            pass
    except OSError:
        pass
    bad.close()

    live_holders = 5
    allocated = 3 * MiB + 2 * MiB + charged(odd_size)

    def settled(deaths=0):
        # The registry's figures, and the counters of each close: the daemon
        # counts a close once its reclaim is done, a moment after the
        # registry shows it (server/connection_closer.h).
        e = d.scrape()
        got = (e.value("shmbroker_client_connections"), e.value("shmbroker_holds"),
               e.value("shmbroker_allocated_bytes"),
               e.value("shmbroker_client_connections_opened_total") -
               e.total("shmbroker_client_connections_closed_total"),
               e.total("shmbroker_client_deaths_total"))
        want = (live_holders, live_holders, allocated, live_holders, deaths)
        if got == want:
            return e
        fail(f"(client_connections, holds, allocated_bytes, opened - closed, deaths) = "
             f"{got}, want {want}")

    e1 = poll_until(settled, timeout=20, what="the gauges to settle after the traffic")
    status = d.status()
    check_eq(status["allocated_bytes"], allocated, "`status --json` allocated_bytes")
    check_eq(e1.value("shmbroker_buffers", backing="memfd", kind="dedicated"), 4,
             'shmbroker_buffers{backing="memfd",kind="dedicated"}')
    check_eq(e1.value("shmbroker_buffers", backing="posix", kind="dedicated"), 1,
             'shmbroker_buffers{backing="posix",kind="dedicated"}')
    check_eq(e1.value("shmbroker_tenant_allocated_bytes", uid=uid), allocated,
             f'shmbroker_tenant_allocated_bytes{{uid="{uid}"}}')
    check_eq(e1.value("shmbroker_tenant_buffers", uid=uid), live_holders,
             f'shmbroker_tenant_buffers{{uid="{uid}"}}')
    for fam in ("shmbroker_tenant_allocated_bytes", "shmbroker_tenant_buffers"):
        other = e1.get(fam, uid="other")
        check(other in (None, 0), f'{fam}{{uid="other"}} with a single tenant: {other}')
    check_eq(e1.value("shmbroker_resident_bytes"), touched,
             "shmbroker_resident_bytes (the two pages `cat` read)")

    check_eq(e1.value("shmbroker_allocations_total", result="ok"), allocations_ok,
             'shmbroker_allocations_total{result="ok"}')
    check_eq(e1.value("shmbroker_allocations_total", result="resource_exhausted"), 1,
             'shmbroker_allocations_total{result="resource_exhausted"}')
    check_eq(e1.value("shmbroker_allocations_total", result="already_exists"), 1,
             'shmbroker_allocations_total{result="already_exists"}')
    check_eq(e1.value("shmbroker_allocations_total", result="invalid_argument"), 1,
             'shmbroker_allocations_total{result="invalid_argument"}')
    check_eq(e1.value("shmbroker_permission_denials_total", method="Release"), 1,
             'shmbroker_permission_denials_total{method="Release"}')
    check_eq(e1.total("shmbroker_client_deaths_total"), 0,
             "shmbroker_client_deaths_total before any client died")
    # cat's hold and obs-short's hold were released; obs-short was reclaimed.
    check_eq(e1.value("shmbroker_releases_total", reason="release"), 2,
             'shmbroker_releases_total{reason="release"}')
    check_eq(e1.value("shmbroker_reclaims_total", reason="release"), 1,
             'shmbroker_reclaims_total{reason="release"}')
    check_eq(e1.value("shmbroker_reclaimed_bytes_total", reason="release"), 4096,
             'shmbroker_reclaimed_bytes_total{reason="release"}')

    rpc = "shmbroker_rpc_duration_seconds"
    check_eq(check_histogram(e1, rpc, method="Allocate", code="OK"), allocations_ok,
             f'{rpc}_count{{method="Allocate",code="OK"}}')
    for method, code_name in (("Allocate", "RESOURCE_EXHAUSTED"), ("Allocate", "ALREADY_EXISTS"),
                              ("Allocate", "INVALID_ARGUMENT"),
                              ("Attach", "OK"), ("Attach", "NOT_FOUND"),
                              ("Release", "PERMISSION_DENIED")):
        check_eq(check_histogram(e1, rpc, method=method, code=code_name), 1,
                 f'{rpc}_count{{method="{method}",code="{code_name}"}}')

    # Client connections: 5 holders, 2 failed allocs, 2 cats, obs-short, our 2.
    opened = e1.value("shmbroker_client_connections_opened_total")
    check_eq(opened, live_holders + 7, "shmbroker_client_connections_opened_total")
    closed = e1.total("shmbroker_client_connections_closed_total")
    check_eq(opened - closed, live_holders,
             "shmbroker_client_connections_opened_total - sum(..._closed_total) (vs open ones)")
    # All but the holders and the protocol breaker hung up.
    check_eq(e1.value("shmbroker_client_connections_closed_total", reason="hangup"), 6,
             'shmbroker_client_connections_closed_total{reason="hangup"}')
    check_eq(e1.value("shmbroker_client_connections_closed_total", reason="protocol_error"), 1,
             'shmbroker_client_connections_closed_total{reason="protocol_error"}')

    # --- a client dies holding a buffer ------------------------------------
    victim.kill()
    live_holders -= 1
    allocated -= MiB
    e2 = poll_until(lambda: settled(deaths=1), timeout=20,
                    what="the SIGKILLed holder's buffer to be reclaimed")
    check_eq(e2.total("shmbroker_client_deaths_total"), 1, "shmbroker_client_deaths_total")
    check_eq(e2.value("shmbroker_reclaims_total", reason="client_closed"), 1,
             'shmbroker_reclaims_total{reason="client_closed"}')
    check_eq(e2.value("shmbroker_reclaimed_bytes_total", reason="client_closed"), MiB,
             'shmbroker_reclaimed_bytes_total{reason="client_closed"}')
    check_eq(e2.value("shmbroker_releases_total", reason="client_closed"), 1,
             'shmbroker_releases_total{reason="client_closed"}')
    check_eq(e2.value("shmbroker_buffers", backing="memfd", kind="dedicated"), 3,
             'shmbroker_buffers{backing="memfd",kind="dedicated"} after the kill')
    # One sample per death; freeing one buffer takes well under a second.
    latency_count = check_histogram(e2, "shmbroker_reclaim_latency_seconds")
    check_eq(latency_count, 1, "shmbroker_reclaim_latency_seconds_count (one death)")
    latency_sum = e2.value("shmbroker_reclaim_latency_seconds_sum")
    check(0 < latency_sum < 1,
          f"shmbroker_reclaim_latency_seconds_sum {latency_sum} for the one death")
    check_eq(e2.value("shmbroker_client_connections_closed_total", reason="hangup"),
             e1.value("shmbroker_client_connections_closed_total", reason="hangup") + 1,
             'shmbroker_client_connections_closed_total{reason="hangup"} after the kill')

    # --- resident bytes: untouched memory is not resident; written memory is --
    check_eq(e2.value("shmbroker_resident_bytes"), touched,
             "shmbroker_resident_bytes after the untouched victim went")
    data = os.path.join(d.dir, "put.data")
    with open(data, "wb") as f:
        f.write(os.urandom(256 * 1024))
    d.hold_put("obs-put", data, label="put")
    allocated += 256 * 1024
    touched += 256 * 1024
    e = d.scrape()
    check_eq((e.value("shmbroker_resident_bytes"), e.value("shmbroker_allocated_bytes")),
             (touched, allocated),
             "(resident_bytes, allocated_bytes) once `put` wrote 256KiB and holds it")

    # --- leases: a detached buffer outlives its CLI, then expires -------------
    before = d.scrape()
    d.cli_ok("alloc", "64KiB", "--name=obs-detached", "--detach", "--ttl=1s")
    allocated_before_expiry = before.value("shmbroker_allocated_bytes")

    def expired():
        e = d.scrape()
        if (e.value("shmbroker_leases_ended_total", reason="lease_expired") >= 1 and
                e.value("shmbroker_allocated_bytes") == allocated_before_expiry):
            return e
        fail(f'leases_ended{{reason="lease_expired"}}='
             f'{e.value("shmbroker_leases_ended_total", reason="lease_expired")}, '
             f'allocated_bytes={e.value("shmbroker_allocated_bytes")}')

    e3 = poll_until(expired, timeout=20, what="the detached lease to expire")
    check_eq(e3.value("shmbroker_leases_granted_total", detached="true") -
             before.value("shmbroker_leases_granted_total", detached="true"), 1,
             'shmbroker_leases_granted_total{detached="true"} after one --detach')
    check_eq(e3.value("shmbroker_reclaims_total", reason="lease_expired"), 1,
             'shmbroker_reclaims_total{reason="lease_expired"}')
    check_eq(check_histogram(e3, "shmbroker_lease_expiry_reclaim_latency_seconds"), 1,
             "shmbroker_lease_expiry_reclaim_latency_seconds_count")
    # Every live holder is a connection with a default lease, renewed by its
    # library (the CLI processes holding buffers renew at about TTL/3).
    check_eq(e3.value("shmbroker_leases", detached="false"),
             e3.value("shmbroker_client_connections"),
             'shmbroker_leases{detached="false"} (one default lease per connection)')
    check_ge(e3.value("shmbroker_keepalives_total"), 1, "shmbroker_keepalives_total")
    e2 = e3

    # --- the exposition as a whole -------------------------------------------
    problems = structure_problems(e2)
    rc, out = promtool_check_metrics(e2.text)
    if rc != 0:
        problems.append(f"`promtool check metrics` exited {rc}:\n{out}")
    check(not problems, "the exposition breaks the contract:\n  " + "\n  ".join(problems))

    d.stop()

    # --- --metrics_address= disables the endpoint ---------------------------
    off = Daemon(["--metrics_address=", "--capacity=64MiB"], expect_metrics=False,
                 label="shmbrokerd (metrics off)").start()
    off.stop()

    return (f"{len(e2.types)} families, {len(e2.samples)} samples; allocations ok="
            f"{allocations_ok:g}, deaths=1, reclaim latency count={latency_count:g}; promtool ok")


if __name__ == "__main__":
    run_test("observability metrics endpoint", body)
