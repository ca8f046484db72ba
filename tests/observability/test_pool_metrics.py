#!/usr/bin/python3
"""Pooled buffers' metrics, by exact value, after real CLI holders.

A daemon with --capacity=256MiB --arena_size=16MiB (pooling up to 4MiB) and
the default scavenge delay (5 minutes: nothing is scavenged or released
during the test). Real `shmbroker alloc SIZE --kind=pooled` holders of known
sizes, then a dedicated one, then all released, then one slot reused; the
shmbroker_arena* families, shmbroker_committed_bytes, shmbroker_allocated_bytes
and shmbroker_buffers{kind} must have the values docs/metrics.md defines at
every step. A second daemon with --scavenge_delay=200ms closes the unused
arena and opens a new one for the next buffer.

The sizes (core/size_classes.h, a 4096-byte page):
- 1KiB: a 1024-byte slot in a span of 2 pages (8 slots, no tail);
- 600 bytes: a 640-byte slot in a span of 2 pages (12 slots, 512 bytes of
  tail that no slot covers);
- 40000 bytes: a page run of 10 pages (40960 bytes);
- 1MiB: a page run of 256 pages.
The page heap takes each span and run from the one free run, so the rest
of the arena stays one run (best fit, core/page_heap.h).

Usage: /usr/bin/python3 test_pool_metrics.py [SHMBROKERD]
(env: SHMBROKERD, SHMBROKER_CLI)
"""

import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

from common import Daemon, check_eq, fail, poll_until, run_test

KiB, MiB = 1 << 10, 1 << 20
PAGE = 4096
ARENA = 16 * MiB
FLAGS = ["--metrics_address=127.0.0.1:0", "--capacity=256MiB", "--arena_size=16MiB"]

# (CLI size, bytes charged in the arena, span tail bytes, pages taken)
SLOT_1K = ("1KiB", 1024, 0, 2)
SLOT_600 = ("600", 640, 512, 2)
RUN_40000 = ("40000", 10 * PAGE, 0, 10)
RUN_1M = ("1MiB", MiB, 0, 256)


def pool_view(e):
    """The pool's values in one scrape."""
    return {
        "arenas": e.value("shmbroker_arenas"),
        "in_use": e.value("shmbroker_arena_bytes", state="in_use"),
        "free": e.value("shmbroker_arena_bytes", state="free"),
        "span_tail": e.value("shmbroker_arena_bytes", state="span_tail"),
        "largest_free_run": e.value("shmbroker_arena_largest_free_run_bytes"),
        "committed": e.value("shmbroker_committed_bytes"),
        "allocated": e.value("shmbroker_allocated_bytes"),
        "pooled_buffers": e.value("shmbroker_buffers", backing="memfd", kind="pooled"),
        "dedicated_buffers": e.value("shmbroker_buffers", backing="memfd", kind="dedicated"),
        "created_total": e.value("shmbroker_arenas_created_total"),
        "released_total": e.value("shmbroker_arenas_released_total"),
        "zeroed_total": e.value("shmbroker_arena_zeroed_bytes_total"),
        "scavenged_total": e.value("shmbroker_arena_scavenged_bytes_total"),
    }


def expected(blocks, cached_spans=(), dedicated=0, zeroed=0):
    """The pool's values with `blocks` live in one arena (plus `cached_spans`
    kept empty for reuse) and `dedicated` bytes of dedicated buffers."""
    in_use = sum(b[1] for b in blocks)
    spans = {b for b in blocks if b in (SLOT_1K, SLOT_600)} | set(cached_spans)
    tail = sum(s[2] for s in spans)
    pages = sum(b[3] for b in blocks if b not in (SLOT_1K, SLOT_600)) + sum(s[3] for s in spans)
    return {
        "arenas": 1, "in_use": in_use, "free": ARENA - in_use - tail, "span_tail": tail,
        "largest_free_run": (ARENA // PAGE - pages) * PAGE,
        "committed": ARENA + dedicated, "allocated": in_use + dedicated,
        "pooled_buffers": len(blocks), "dedicated_buffers": 1 if dedicated else 0,
        "created_total": 1, "released_total": 0, "zeroed_total": zeroed,
        "scavenged_total": 0,
    }


def check_pool(d, want, what):
    got = pool_view(d.scrape())
    diff = {k: (got[k], v) for k, v in want.items() if got[k] != v}
    if diff:
        fail(f"pool metrics {what}: (got, want) of the differing ones: {diff}; all: {got}")


def body():
    uid = str(os.getuid())
    d = Daemon(FLAGS).start()
    fresh = pool_view(d.scrape())
    check_eq(fresh, dict.fromkeys(fresh, 0), "pool metrics of a fresh daemon (all 0)")

    # --- pooled holders of known sizes, then a dedicated one --------------
    held, holders = [], []
    for block in (SLOT_1K, SLOT_600, RUN_40000, RUN_1M):
        holders.append(d.hold(block[0], "--kind=pooled", label=f"pooled-{block[0]}"))
        held.append(block)
        check_pool(d, expected(held), f"with {[b[0] for b in held]} held")
    dedicated = d.hold("5000", "--kind=dedicated", label="dedicated")
    check_pool(d, expected(held, dedicated=2 * PAGE),
               "with a dedicated 5000-byte buffer too (two pages, outside the arena)")
    e = d.scrape()
    check_eq(e.value("shmbroker_tenant_allocated_bytes", uid=uid),
             sum(b[1] for b in held) + 2 * PAGE, f'shmbroker_tenant_allocated_bytes{{uid="{uid}"}}')

    # --- all released: the arena stays for reuse, empty ---------------------
    # Each slot's span stays, empty, for the next buffer of its class; the
    # runs go back and join the free run.
    for h in holders + [dedicated]:
        h.terminate()
    spans = (SLOT_1K, SLOT_600)
    check_pool(d, expected([], cached_spans=spans),
               "after every holder released (SIGTERM)")

    # --- a slot used again is zeroed first --------------------------------------
    # The lowest free slot of the 1024-byte span is the one just released,
    # which its holder could have written: the daemon zeroes the 1024 bytes.
    d.hold(SLOT_1K[0], "--kind=pooled", label="reuse")
    check_pool(d, expected([SLOT_1K], cached_spans=spans, zeroed=1024),
               "after 1KiB was allocated again")
    d.stop()

    # --- an unused arena closes after the scavenge delay ------------------------
    s = Daemon(FLAGS + ["--scavenge_delay=200ms"], label="shmbrokerd (scavenging)").start()
    s.hold(RUN_1M[0], "--kind=pooled", label="brief").terminate()

    def arena_closed():
        v = pool_view(s.scrape())
        got = (v["arenas"], v["committed"], v["in_use"], v["released_total"])
        return got == (0, 0, 0, 1) or fail(f"(arenas, committed, in_use, released_total) = {got}")

    poll_until(arena_closed, timeout=20, what="the unused arena to be released")
    s.hold(SLOT_1K[0], "--kind=pooled", label="after-close")
    v = pool_view(s.scrape())
    got = (v["arenas"], v["committed"], v["in_use"], v["created_total"], v["released_total"])
    check_eq(got, (1, ARENA, 1024, 2, 1),
             "(arenas, committed, in_use, created_total, released_total) after a new buffer")
    s.stop()
    return ("arena bytes by state, committed, allocated, buffers by kind, arenas created "
            "and released, zeroed bytes: exact at every step")


if __name__ == "__main__":
    run_test("observability pooled-buffer metrics", body)
