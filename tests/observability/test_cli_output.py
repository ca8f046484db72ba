#!/usr/bin/python3
"""`shmbroker status`, `ls`, `tenants` and `health`, as tables and as JSON.

Two real holders (1MiB memfd, 1MiB posix) on a --capacity=64MiB daemon; the
tables must have their header words and the holders' rows, the JSON the keys
and values of docs/cli.md (status, ls) and of the tenants contract:
{"tenants": [{"uid": N, "allocated_bytes": N, "buffers": N}, ...]}.

Usage: /usr/bin/python3 test_cli_output.py [SHMBROKERD]
(env: SHMBROKERD, SHMBROKER_CLI)
"""

import json
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

from common import Daemon, check, check_eq, fail, poll_until, run_test

MiB = 1 << 20
UNITS = {"": 1, "b": 1, "bytes": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
         "tib": 1 << 40}


def parse_size(text):
    """'2097152', '2MiB', '2.0 MiB', '2048KiB' -> bytes."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).lower() not in UNITS:
        fail(f"cannot read a size from {text!r}")
    return round(float(m.group(1)) * UNITS[m.group(2).lower()])


def table(output, header_words, what):
    """Splits a whitespace-aligned table; checks the header; returns rows."""
    lines = [l for l in output.splitlines() if l.strip()]
    check(lines, f"{what}: empty output")
    header = lines[0].split()
    check_eq(header, header_words, f"{what}: header words")
    return [l.split() for l in lines[1:]]


def body():
    uid, gid = os.getuid(), os.getgid()
    d = Daemon(["--metrics_address=127.0.0.1:0", "--capacity=64MiB"]).start()
    mem = d.hold("1MiB", "--name=cli-mem", label="mem")
    posix = d.hold("1MiB", "--name=cli-posix", "--backing=posix", label="posix")

    # --- status ---------------------------------------------------------------
    st = d.cli_json("status")
    for key in ("capacity_bytes", "allocated_bytes", "buffers", "clients", "holds", "version",
                "started_unix_seconds"):
        check(key in st, f"`status --json` lacks {key!r}: {st}")
    check_eq((st["capacity_bytes"], st["allocated_bytes"], st["buffers"], st["clients"],
              st["holds"]), (64 * MiB, 2 * MiB, 2, 2, 2),
             "`status --json` (capacity_bytes, allocated_bytes, buffers, clients, holds)")
    st_after = json.loads(d.cli_ok("status", "--json").stdout)  # flag after the command
    check_eq(st_after["allocated_bytes"], 2 * MiB,
             "`status --json` (flag after the command) allocated_bytes")

    out = d.cli_ok("status").stdout
    rows = {l.split()[0]: l.split()[1:] for l in out.splitlines() if l.split()}
    for key in ("capacity", "allocated", "buffers", "clients", "holds", "version"):
        check(key in rows, f"`status` has no {key!r} line:\n{out}")
    check(any(str(64 * MiB) in w for w in rows["capacity"]),
          f"`status` capacity line does not show {64 * MiB} bytes: {rows['capacity']}")
    check(any(str(2 * MiB) in w for w in rows["allocated"]),
          f"`status` allocated line does not show {2 * MiB} bytes: {rows['allocated']}")
    check_eq(rows["buffers"][:1], ["2"], "`status` buffers")
    check_eq(rows["clients"][:1], ["2"], "`status` clients")
    check_eq(rows["holds"][:1], ["2"], "`status` holds")
    check_eq(rows["version"][:1], [st["version"]], "`status` version")

    # --- ls ---------------------------------------------------------------------
    listing = d.cli_json("ls")
    check(isinstance(listing.get("buffers"), list), f"`ls --json` has no buffers list: {listing}")
    by_name = {b.get("name"): b for b in listing["buffers"]}
    check_eq(sorted(by_name), ["cli-mem", "cli-posix"], "`ls --json` buffer names")
    keys = {"name", "handle", "size", "backing", "holders", "owner_uid", "owner_gid",
            "owner_pid", "created_unix_seconds", "charged_bytes", "shm_name", "share"}
    for name, holder, backing in (("cli-mem", mem, "memfd"), ("cli-posix", posix, "posix")):
        b = by_name[name]
        missing = keys - set(b)
        check(not missing, f"`ls --json` {name} lacks {sorted(missing)}: {b}")
        check_eq((b["handle"], b["size"], b["backing"], b["holders"], b["owner_uid"],
                  b["owner_gid"], b["owner_pid"], b["charged_bytes"], b["share"]),
                 (holder.handle, MiB, backing, 1, uid, gid, holder.pid, MiB, []),
                 f"`ls --json` {name} (handle, size, backing, holders, owner_uid, owner_gid, "
                 "owner_pid, charged_bytes, share)")
    check_eq(by_name["cli-mem"]["shm_name"], "", "`ls --json` shm_name of a memfd buffer")
    check(by_name["cli-posix"]["shm_name"].startswith("/shmbroker."),
          f"`ls --json` shm_name of the posix buffer: {by_name['cli-posix']['shm_name']!r}")

    # A 1MiB memfd buffer is pooled on this daemon (4MiB arenas, a sixteenth
    # of --capacity=64MiB, pool up to 1MiB): a page run in an arena.
    mem_json = by_name["cli-mem"]
    check_eq((mem_json["kind"], mem_json["offset"] % 4096), ("pooled", 0),
             "`ls --json` cli-mem (kind, offset mod page)")
    check(isinstance(mem_json.get("arena"), int) and mem_json["arena"] > 0,
          f"`ls --json` cli-mem has no arena id: {mem_json}")
    posix_json = by_name["cli-posix"]
    check_eq(posix_json["kind"], "dedicated", "`ls --json` cli-posix kind")
    check("arena" not in posix_json and "offset" not in posix_json,
          f"`ls --json` a dedicated buffer has arena/offset: {posix_json}")

    rows = table(d.cli_ok("ls").stdout,
                 ["NAME", "HANDLE", "SIZE", "BACKING", "KIND", "HOLDERS", "OWNER", "AGE"],
                 "`ls`")
    by_name = {r[0]: r for r in rows}
    for name, holder, backing, kind in (("cli-mem", mem, "memfd", "pooled"),
                                        ("cli-posix", posix, "posix", "dedicated")):
        check(name in by_name, f"`ls` has no row for {name}: {rows}")
        r = by_name[name]
        check_eq(r[1:7], [str(holder.handle), "1MiB", backing, kind, "1", str(uid)],
                 f"`ls` row of {name} (HANDLE SIZE BACKING KIND HOLDERS OWNER)")

    # --- tenants ------------------------------------------------------------------
    def tenants_json():
        t = d.cli_json("tenants")
        check(isinstance(t.get("tenants"), list), f"`tenants --json` has no tenants list: {t}")
        for entry in t["tenants"]:
            check(set(entry) >= {"uid", "allocated_bytes", "buffers"},
                  f"`tenants --json` entry lacks uid/allocated_bytes/buffers: {entry}")
            check(isinstance(entry["uid"], int),
                  f"`tenants --json` uid should be a number: {entry}")
        return {e["uid"]: (e["allocated_bytes"], e["buffers"]) for e in t["tenants"]}

    check_eq(tenants_json(), {uid: (2 * MiB, 2)}, "`tenants --json` {uid: (allocated, buffers)}")
    rows = table(d.cli_ok("tenants").stdout, ["UID", "ALLOCATED", "BUFFERS"], "`tenants`")
    mine = [r for r in rows if r and r[0] == str(uid)]
    check(len(mine) == 1, f"`tenants` should have one row for uid {uid}: {rows}")
    check_eq(parse_size("".join(mine[0][1:-1])), 2 * MiB, "`tenants` ALLOCATED of our uid")
    check_eq(mine[0][-1], "2", "`tenants` BUFFERS of our uid")

    posix.kill()
    def one_left():
        t = tenants_json()
        return t == {uid: (MiB, 1)} or fail(f"tenants = {t}")

    poll_until(one_left, timeout=20,
               what="`tenants --json` to show 1MiB in 1 buffer after a holder died")

    # --- health, usage error --------------------------------------------------------
    r = d.cli("health")
    check(r.returncode == 0 and r.stdout.strip() == "SERVING",
          f"`shmbroker health`: want exit 0 and SERVING, got {r}")
    r = d.cli("no-such-command")
    check_eq(r.returncode, 2, f"exit status of an unknown command (stderr {r.stderr.strip()!r})")

    d.stop()
    return "status, ls, tenants (table and JSON) and health"


if __name__ == "__main__":
    run_test("observability CLI output", body)
