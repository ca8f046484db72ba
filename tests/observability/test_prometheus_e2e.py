#!/usr/bin/python3
"""A real Prometheus server scrapes a live shmbrokerd.

Starts shmbrokerd (metrics on 127.0.0.1:0) and Prometheus (Debian package
`prometheus`, or $PROMETHEUS) on a free 127.0.0.1 port with a generated
config (scrape_interval 1s, the daemon as the static target of job
"shmbroker", TSDB in a temp dir). Drives allocations and kills a holder, then
polls Prometheus' HTTP API until the values arrive (deadline 60 s), and
checks /api/v1/targets (target up, no scrape error) and /api/v1/metadata,
finds series in Prometheus for every family docs/metrics.md documents (as
many as the daemon exports, and more than 20), and runs the PromQL of its
"Useful queries".

Usage: /usr/bin/python3 test_prometheus_e2e.py [SHMBROKERD]
(env: SHMBROKERD, SHMBROKER_CLI, PROMETHEUS)
"""

import os
import shutil
import urllib.parse
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

from common import (Daemon, Failure, check, check_eq, documented_families, documented_queries,
                    fail, fatal, free_port, http_get, http_get_json, make_temp_dir,
                    metrics_doc_path, poll_until, read_text, run_test, show_logs_on_failure,
                    spawn, tail)

JOB = "shmbroker"
MiB = 1 << 20
DEADLINE = 60.0


class Prometheus:
    def __init__(self, target):
        self.label = "prometheus"
        self.dir = make_temp_dir("shmbroker-obs-prom-")
        self.stdout_path = os.path.join(self.dir, "prometheus.stdout")
        self.stderr_path = os.path.join(self.dir, "prometheus.stderr")
        self.config = os.path.join(self.dir, "prometheus.yml")
        with open(self.config, "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: {JOB}
    static_configs:
      - targets: ['{target}']
""")
        self.binary = os.environ.get("PROMETHEUS") or shutil.which("prometheus")
        check(self.binary, "prometheus not found on PATH (Debian package: prometheus) "
              "and $PROMETHEUS is not set")
        self.proc = None
        self.base = None

    def start(self):
        # The port was free when we looked; retry if someone took it since.
        for attempt in range(3):
            port = free_port()
            self.base = f"http://127.0.0.1:{port}"
            data = os.path.join(self.dir, f"data{attempt}")
            self.proc = spawn([self.binary, f"--config.file={self.config}",
                               f"--storage.tsdb.path={data}",
                               f"--web.listen-address=127.0.0.1:{port}",
                               "--storage.tsdb.retention.time=1h"],
                              self.stdout_path, self.stderr_path)
            show_logs_on_failure(self)

            def ready():
                if self.proc.poll() is not None:
                    return "exited"
                try:
                    http_get(self.base + "/-/ready", timeout=2)
                    return "ready"
                except Exception:
                    return None

            state = poll_until(ready, timeout=DEADLINE, what="Prometheus /-/ready")
            if state == "ready":
                return self
            log = read_text(self.stderr_path)
            if "address already in use" not in log:
                fail(f"prometheus exited {self.proc.returncode} at start:\n{tail(log)}")
        fail("prometheus could not bind a free port in 3 attempts")

    def query(self, promql):
        url = self.base + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            answer = http_get_json(url)
        except Failure as e:
            if "HTTP 400" in str(e):  # a bad query stays bad: do not retry
                fatal(f"Prometheus rejected the query {promql!r}: {e}")
            raise
        check_eq(answer.get("status"), "success", f"status of query {promql!r} ({answer})")
        return answer["data"]["result"]

    def scalar(self, promql):
        """The value of a query returning one series, or None when empty."""
        result = self.query(promql)
        if not result:
            return None
        check(len(result) == 1, f"query {promql!r} returned {len(result)} series: {result}")
        return float(result[0]["value"][1])

    def wait_value(self, promql, predicate, description):
        def arrived():
            v = self.scalar(promql)
            if v is not None and predicate(v):
                return (v,)
            fail(f"{promql} = {v}")

        return poll_until(arrived, timeout=DEADLINE, interval=0.25,
                          what=f"Prometheus to report {description}")[0]


def body():
    d = Daemon(["--metrics_address=127.0.0.1:0", "--capacity=64MiB"]).start()
    target = urllib.parse.urlsplit(d.metrics_url).netloc
    prom = Prometheus(target).start()

    sel = f'{{job="{JOB}"}}'
    prom.wait_value(f"up{sel}", lambda v: v == 1, "up == 1 (first scrape)")
    prom.wait_value(f"shmbroker_capacity_bytes{sel}", lambda v: v == 64 * MiB,
                    "shmbroker_capacity_bytes == 64MiB")

    # Traffic: three holders (one posix), an over-capacity failure, a death.
    d.hold("1MiB", "--name=prom-a", label="a")
    d.hold("1MiB", "--name=prom-b", "--backing=posix", label="b")
    victim = d.hold("1MiB", "--name=prom-victim", label="victim")
    r = d.cli("alloc", "1GiB")
    check_eq(r.returncode, 1, f"exit status of an over-capacity alloc ({r.stderr.strip()!r})")
    victim.kill()

    prom.wait_value(f"shmbroker_allocated_bytes{sel}", lambda v: v == 2 * MiB,
                    "shmbroker_allocated_bytes == 2MiB after the kill")
    prom.wait_value(f"shmbroker_client_deaths_total{sel}", lambda v: v == 1,
                    "shmbroker_client_deaths_total == 1")
    prom.wait_value(f'shmbroker_allocations_total{{job="{JOB}",result="ok"}}',
                    lambda v: v == 3, 'shmbroker_allocations_total{result="ok"} == 3')
    prom.wait_value(f'shmbroker_allocations_total{{job="{JOB}",result="resource_exhausted"}}',
                    lambda v: v == 1,
                    'shmbroker_allocations_total{result="resource_exhausted"} == 1')
    prom.wait_value(f'sum(shmbroker_buffers{sel})', lambda v: v == 2,
                    "sum(shmbroker_buffers) == 2")
    # One sample per death.
    prom.wait_value(f"shmbroker_reclaim_latency_seconds_count{sel}", lambda v: v == 1,
                    "shmbroker_reclaim_latency_seconds_count == 1")
    prom.wait_value(
        f'sum(shmbroker_rpc_duration_seconds_count{{job="{JOB}",method="Allocate",code="OK"}})',
        lambda v: v == 3, 'rpc_duration_seconds_count{method="Allocate",code="OK"} == 3')
    # The histogram is usable by PromQL: the median of the three Allocate
    # calls lies inside the buckets (25 µs to 1 s). NaN (no observations),
    # 0, or a value past the last bucket (e.g. buckets in the wrong unit)
    # fail.
    prom.wait_value(
        f'histogram_quantile(0.5, sum by (le) '
        f'(shmbroker_rpc_duration_seconds_bucket{{job="{JOB}",method="Allocate",code="OK"}}))',
        lambda v: 0 < v < 1, "a median Allocate latency in (0, 1 s)")

    # /api/v1/targets: our target, healthy, scraping the advertised URL.
    targets = http_get_json(prom.base + "/api/v1/targets")["data"]["activeTargets"]
    ours = [t for t in targets if t.get("labels", {}).get("job") == JOB]
    check_eq(len(ours), 1, f"active targets of job {JOB} ({targets})")
    t = ours[0]
    check_eq(t.get("health"), "up", f"target health (lastError {t.get('lastError')!r})")
    check_eq(t.get("lastError"), "", "target lastError")
    check_eq(t.get("scrapeUrl"), d.metrics_url, "target scrapeUrl vs the daemon's metrics URL")

    # Prometheus took in the HELP and TYPE of the families.
    meta = http_get_json(prom.base + "/api/v1/metadata?" +
                         urllib.parse.urlencode({"metric": "shmbroker_client_deaths_total"}))
    entries = meta.get("data", {}).get("shmbroker_client_deaths_total", [])
    check(entries, f"/api/v1/metadata has nothing for shmbroker_client_deaths_total: {meta}")
    check_eq(entries[0].get("type"), "counter", "metadata type of shmbroker_client_deaths_total")
    check(entries[0].get("help"), "metadata help of shmbroker_client_deaths_total is empty")

    # Every documented family reached Prometheus: as many as the daemon
    # exports (test_docs_match.py checks they are the same ones).
    doc = metrics_doc_path()
    families = sorted(documented_families(doc))
    exported = d.scrape().types
    check(len(families) >= len(exported) and len(families) > 20,
          f"{doc} documents {len(families)} families; the daemon exports {len(exported)} "
          "(want at least as many, and more than 20)")
    missing = list(families)

    def all_scraped():
        missing[:] = [f for f in missing if not prom.query(
            f'{{__name__=~"{f}(_bucket|_count|_sum)?",job="{JOB}"}}')]
        return not missing or fail(f"no series yet: {missing}")

    poll_until(all_scraped, timeout=DEADLINE, interval=0.5,
               what="a series in Prometheus of every documented family")

    # The PromQL of docs/metrics.md ("| question | `query` |" rows) is valid
    # and finds series.
    # (rate() needs two samples of a series born late: poll.)
    queries = documented_queries(doc)
    pending = list(queries)

    def all_answered():
        pending[:] = [q for q in pending if not prom.query(q)]
        return not pending or fail(f"still empty: {pending}")

    poll_until(all_answered, timeout=DEADLINE, interval=0.5,
               what="every documented PromQL query to return series")

    d.stop()
    return (f"Prometheus scraped {target}: target up, allocated 2MiB, deaths == 1; "
            f"{len(families)} documented families found, {len(queries)} documented queries run")


if __name__ == "__main__":
    run_test("observability prometheus end-to-end", body)
