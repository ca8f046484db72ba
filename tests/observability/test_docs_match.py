#!/usr/bin/python3
"""docs/metrics.md lists exactly the metric families the daemon exports.

Documented: the families of metrics_doc.documented_families (table rows
whose first cell is a backticked shmbroker_ name, or one of the
ALLOWED_FOREIGN_FAMILIES).
Exported: the families of the "# TYPE" lines of a live /metrics, after
traffic that gives every labelled family at least one series (a histogram
counts once, by its base name). Where the row's second cell is a metric type
(counter, gauge, histogram, summary), it must match the TYPE line too.

Usage: /usr/bin/python3 test_docs_match.py [SHMBROKERD]
(env: SHMBROKERD, SHMBROKER_CLI, SHMBROKER_METRICS_DOC: default
docs/metrics.md of this source tree)
"""

import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

from common import (Daemon, FdSession, check, check_eq, documented_families,
                    encode_release_request, grpc_channel, grpc_unary, metrics_doc_path,
                    poll_until, run_test)


def body():
    doc_path = metrics_doc_path()
    docs = documented_families(doc_path)

    d = Daemon(["--metrics_address=127.0.0.1:0", "--capacity=16MiB"]).start()
    # Traffic so that labelled families have series: an ok and a failed
    # allocation, a release, a death (reclaim latency), a permission denial.
    keeper = d.hold("1MiB", "--name=docs-keeper", label="keeper")
    d.hold("1MiB", "--backing=posix", label="posix")
    victim = d.hold("1MiB", label="victim")
    r = d.cli("alloc", "1GiB")
    check_eq(r.returncode, 1, f"exit status of an over-capacity alloc ({r.stderr.strip()!r})")
    d.cli_ok("alloc", "4KiB", "--hold=0s")
    session = FdSession(d.socket)
    channel = grpc_channel(d.socket)
    code, _, details = grpc_unary(channel, "/shmbroker.v1.Broker/Release",
                                  encode_release_request(keeper.handle),
                                  metadata=session.metadata())
    check_eq(code.name, "PERMISSION_DENIED",
             f"Release of another connection's hold (details {details!r})")
    channel.close()
    session.close()
    victim.kill()

    def death_seen():
        e = d.scrape()
        return e if e.total("shmbroker_client_deaths_total") == 1 else None

    expo = poll_until(death_seen, timeout=20, what="shmbroker_client_deaths_total == 1")

    exported = set(expo.types)
    documented = set(docs)
    problems = []
    for name in sorted(documented - exported):
        problems.append(f"documented ({os.path.basename(doc_path)}:{docs[name][1]}) but not "
                        f"exported: {name}")
    for name in sorted(exported - documented):
        problems.append(f"exported ({expo.types[name]}) but not documented: {name}")
    for name in sorted(documented & exported):
        typ = docs[name][0]
        if typ is not None and typ != expo.types[name]:
            problems.append(f"{name}: documented as {typ} "
                            f"({os.path.basename(doc_path)}:{docs[name][1]}), exported as "
                            f"{expo.types[name]}")
    check(not problems, f"{doc_path} and /metrics disagree:\n  " + "\n  ".join(problems))
    d.stop()
    return f"{len(documented)} metric families documented and exported"


if __name__ == "__main__":
    run_test("observability docs/metrics.md matches /metrics", body)
