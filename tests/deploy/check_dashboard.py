#!/usr/bin/python3
"""Lint deploy/grafana/shmbroker-dashboard.json, then run every panel query
against a real Prometheus scraping a real shmbrokerd.

Lint (no processes):
- valid JSON without duplicate keys; schemaVersion >= 36, uid, title;
- panel ids unique, gridPos inside 24 columns, panels do not overlap;
- every $variable used is defined in templating (or a Grafana built-in), and
  the $instance variable is label_values(shmbroker_build_info, instance);
- every expr filters on $instance and names only shmbroker_* metrics listed
  in docs/metrics.md (with _bucket/_sum/_count for histograms) or `up`.

Live:
- starts shmbrokerd ($SHMBROKERD) on a temp socket, metrics on 127.0.0.1:0,
  and Prometheus (Debian package `prometheus`, or $PROMETHEUS) on a free
  127.0.0.1 port (scrape_interval 1s, temp TSDB, job "shmbroker", loading
  deploy/prometheus/alerts.yml);
- drives the daemon with the CLI ($SHMBROKER_CLI): held memfd and posix
  buffers, put/cat, an allocation released after 100ms, a failed allocation
  (over capacity), a duplicate name, and a holder killed with SIGKILL (a
  client death, a client_closed reclaim, a reclaim latency sample);
- resolves $instance as Grafana would (label values of shmbroker_build_info),
  substitutes $__rate_interval/$__interval with 1m, and evaluates EVERY panel
  query through /api/v1/query until each returns status success and data
  (at least one series with a non-NaN value), polling with a deadline;
- checks that Prometheus loaded and evaluated every alerting rule.
Every process and temp dir it made is gone when it exits, pass or fail.

The daemon, Prometheus and their queries are live_stack.py's.

Usage: /usr/bin/python3 tests/deploy/check_dashboard.py [--lint-only]
(env: SHMBROKERD, SHMBROKER_CLI, PROMETHEUS; default: build/server/shmbrokerd,
build/client/shmbroker, prometheus on PATH. SHMBROKER_DASHBOARD checks another
dashboard file.)
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys

from live_stack import (Failure, Session, api, check, has_data, log, poll,
                        query, scalar, start_daemon, start_prometheus, tail)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DASHBOARD = (os.environ.get("SHMBROKER_DASHBOARD")
             or os.path.join(ROOT, "deploy", "grafana", "shmbroker-dashboard.json"))
METRICS_DOC = os.path.join(ROOT, "docs", "metrics.md")
ALERTS = os.path.join(ROOT, "deploy", "prometheus", "alerts.yml")
JOB = "shmbroker"
RATE_INTERVAL = "1m"

# Panel queries allowed to return no data, because they only have data after
# events this test does not cause, keyed by panel title then refId, with the
# reason. Keep it minimal: cause the event instead where possible. (Every
# query has data today: the deaths and reclaim latency come from a SIGKILLed
# holder, and labelled counters exist at zero from the start.)
MAY_BE_EMPTY = {}

# Grafana's built-in variables that may appear in queries and links.
GRAFANA_BUILTINS = {
    "__rate_interval", "__interval", "__interval_ms", "__range", "__range_s",
    "__range_ms", "__from", "__to", "__dashboard", "__org", "__user", "__name",
    "__timeFilter", "timeFilter", "__all",
}
PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
    "group_right", "bool", "offset", "inf", "nan", "atan2",
}


# --------------------------------------------------------------------- lint

def documented_metrics():
    """shmbroker_* names from the tables of docs/metrics.md, plus the
    series names a histogram exposes."""
    names = set()
    with open(METRICS_DOC) as f:
        for line in f:
            m = re.match(r"^\|\s*`(shmbroker_[a-z0-9_]+)`\s*\|\s*(\w+)\s*\|", line)
            if not m:
                continue
            name, kind = m.groups()
            names.add(name)
            if kind == "histogram":
                names.update({name + "_bucket", name + "_sum", name + "_count"})
            if kind == "summary":
                names.update({name + "_sum", name + "_count"})
    check(len(names) >= 20, f"found only {len(names)} metrics in {METRICS_DOC}: {sorted(names)}")
    return names


def expr_metric_names(expr):
    """Metric names an expression selects (a small PromQL tokenizer: enough
    for dashboard queries; selectors by __name__ are refused)."""
    check("__name__" not in expr, f"selector by __name__ is not allowed: {expr}")
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)          # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)         # ranges and subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"(?<![\w:.])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?:ms|s|m|h|d|w|y)?\b", " ", s)
    s = re.sub(r"\$\{?\w+\}?", " ", s)
    names = []
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        name = m.group(0)
        if s[m.end():].lstrip().startswith("("):
            continue  # a function or an aggregation
        if name.lower() in PROMQL_KEYWORDS:
            continue
        names.append(name)
    return names


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def all_strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield k
            yield from all_strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from all_strings(v)


VARIABLE_RE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")


def lint(allowed):
    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        dups = {k for k in keys if keys.count(k) > 1}
        check(not dups, f"duplicate JSON keys {sorted(dups)}")
        return dict(pairs)

    with open(DASHBOARD) as f:
        try:
            dash = json.load(f, object_pairs_hook=no_duplicates)
        except json.JSONDecodeError as e:
            raise Failure(f"{DASHBOARD} is not valid JSON: {e}")
    check(isinstance(dash.get("schemaVersion"), int) and dash["schemaVersion"] >= 36,
          f"schemaVersion must be an integer >= 36, not {dash.get('schemaVersion')!r}")
    check(isinstance(dash.get("uid"), str) and re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dash["uid"]),
          f"uid must be 1-40 characters [A-Za-z0-9_-], not {dash.get('uid')!r}")
    check(isinstance(dash.get("title"), str) and dash["title"].strip(), "title missing")

    variables = {}
    for v in dash.get("templating", {}).get("list", []):
        check(v.get("name") and v["name"] not in variables, f"variable name missing or repeated: {v}")
        variables[v["name"]] = v
    check("instance" in variables, "templating has no $instance variable")
    inst = variables["instance"]
    query = inst.get("query")
    if isinstance(query, dict):
        query = query.get("query")
    check(inst.get("type") == "query"
          and re.fullmatch(r"label_values\(\s*shmbroker_build_info\s*,\s*instance\s*\)", query or ""),
          f"$instance must be a query variable label_values(shmbroker_build_info, instance), not {inst}")

    used = set()
    for text in all_strings(dash):
        for m in VARIABLE_RE.finditer(text):
            used.add(next(g for g in m.groups() if g))
    undefined = sorted(u for u in used if u not in variables and u not in GRAFANA_BUILTINS)
    check(not undefined, f"variables used but not defined: {undefined}")

    ids = set()
    boxes = []
    queries = []
    panels = list(all_panels(dash.get("panels", [])))
    check(panels, "the dashboard has no panels")
    for p in panels:
        title = p.get("title", "")
        pid = p.get("id")
        check(isinstance(pid, int) and pid not in ids, f"panel {title!r}: id {pid!r} missing or repeated")
        ids.add(pid)
        g = p.get("gridPos") or {}
        x, y, w, h = (g.get(k) for k in ("x", "y", "w", "h"))
        check(all(isinstance(n, int) for n in (x, y, w, h)), f"panel {title!r}: bad gridPos {g}")
        check(x >= 0 and y >= 0 and w >= 1 and h >= 1 and x + w <= 24,
              f"panel {title!r}: gridPos {g} does not fit 24 columns")
        for other_title, (ox, oy, ow, oh) in boxes:
            overlap = x < ox + ow and ox < x + w and y < oy + oh and oy < y + h
            check(not overlap, f"panels {title!r} and {other_title!r} overlap")
        boxes.append((title, (x, y, w, h)))
        if p.get("type") == "row":
            continue
        targets = p.get("targets") or []
        check(targets, f"panel {title!r} has no queries")
        refs = [t.get("refId") for t in targets]
        check(len(set(refs)) == len(refs) and all(refs), f"panel {title!r}: refIds {refs}")
        for t in targets:
            expr = t.get("expr", "")
            check(expr.strip(), f"panel {title!r} {t.get('refId')}: empty expr")
            check("$instance" in expr or "${instance" in expr,
                  f"panel {title!r} {t['refId']}: does not filter on $instance: {expr}")
            names = expr_metric_names(expr)
            check(names, f"panel {title!r} {t['refId']}: no metric found in {expr}")
            bad = [n for n in names if n != "up" and n not in allowed]
            check(not bad, f"panel {title!r} {t['refId']}: metrics not in docs/metrics.md: {bad} ({expr})")
            queries.append((title, t["refId"], expr))
    for title, refs in MAY_BE_EMPTY.items():
        for ref in refs:
            check(any(q[0] == title and q[1] == ref for q in queries),
                  f"MAY_BE_EMPTY names a query that is not on the dashboard: {title} {ref}")
    log(f"lint ok: {len(panels)} panels, {len(queries)} queries, variables {sorted(variables)}")
    return queries


# --------------------------------------------------------------------- live

def drive(s, cli, sock):
    """Events for every panel: holders, attach, release, failures, a death."""
    base_argv = [cli, f"--socket={sock}"]

    def run(args, expect_rc=0, stdin=None):
        r = subprocess.run(base_argv + args, input=stdin, capture_output=True, text=True, timeout=30)
        check(r.returncode == expect_rc,
              f"shmbroker {' '.join(args)}: exit {r.returncode}, wanted {expect_rc}: {r.stderr.strip()}")
        return r

    def hold(label, args):
        proc, out, err = s.spawn(label, base_argv + args)

        def holding():
            check(proc.poll() is None, f"{label} exited {proc.returncode}: {tail(err)}")
            return any("holding buffer" in open(path).read() for path in (out, err))

        poll(holding, f"{label} to hold its buffer", deadline=20)
        return proc

    hold("holder-memfd", ["alloc", "1MiB", "--name=dash-memfd"])
    hold("holder-posix", ["alloc", "2MiB", "--name=dash-posix", "--backing=posix"])
    put_path = os.path.join(s.dir, "greeting.txt")
    with open(put_path, "w") as f:
        f.write("hello from check_dashboard\n")
    hold("holder-put", ["put", "dash-greeting", f"--file={put_path}"])
    check(run(["cat", "dash-greeting"]).stdout == "hello from check_dashboard\n", "cat returned other bytes")
    run(["alloc", "64KiB", "--name=dash-brief", "--hold=100ms"])           # Release: reason release
    r = run(["alloc", "128MiB", "--name=dash-too-big"], expect_rc=1)      # over --capacity=64MiB
    log(f"over capacity, as intended: {r.stderr.strip()}")
    run(["alloc", "4KiB", "--name=dash-memfd", "--hold=100ms"], expect_rc=1)  # name taken
    for command in (["ls"], ["status"], ["tenants"], ["health"]):
        run(command)

    # A buffer left to a detached lease, which expires (lease panels).
    run(["alloc", "64KiB", "--name=dash-detached", "--detach", "--ttl=1s"])

    victim = hold("victim", ["alloc", "4MiB", "--name=dash-victim"])
    victim.send_signal(signal.SIGKILL)
    victim.wait()

    def reclaimed():
        return "dash-victim" not in run(["ls"]).stdout

    poll(reclaimed, "the daemon to reclaim the SIGKILLed holder's buffer", deadline=20)
    log("drove: 3 holders, cat, a release, an over-capacity and a name-taken failure, a detached "
        "lease left to expire, a SIGKILLed holder")


def live(queries):
    shmbrokerd = os.environ.get("SHMBROKERD") or os.path.join(ROOT, "build", "server", "shmbrokerd")
    cli = os.environ.get("SHMBROKER_CLI") or os.path.join(ROOT, "build", "client", "shmbroker")
    prometheus = os.environ.get("PROMETHEUS") or shutil.which("prometheus")
    for label, path in (("SHMBROKERD", shmbrokerd), ("SHMBROKER_CLI", cli)):
        check(os.access(path, os.X_OK), f"{label}: {path} is not an executable")
    check(prometheus, "prometheus not found on PATH (Debian package: prometheus) and $PROMETHEUS is not set")

    s = Session()
    try:
        sock, target = start_daemon(s, shmbrokerd)
        base = start_prometheus(s, prometheus, target, ALERTS, JOB)
        poll(lambda: scalar(base, f'up{{job="{JOB}"}}') == 1.0, "the first scrape (up == 1)")
        log("first scrape in")

        # Resolve $instance the way Grafana does for label_values(metric, label).
        instances = poll(lambda: api(base, "/api/v1/label/instance/values",
                                     **{"match[]": "shmbroker_build_info"}),
                         "label values of instance for shmbroker_build_info")
        check(instances == [target], f"$instance would offer {instances}, expected [{target!r}]")

        drive(s, cli, sock)

        # The events happened and reached Prometheus.
        events = {
            "shmbroker_client_deaths_total": 1,
            'shmbroker_reclaims_total{reason="client_closed"}': 1,
            'shmbroker_reclaims_total{reason="release"}': 1,
            'shmbroker_allocations_total{result="resource_exhausted"}': 1,
            'shmbroker_allocations_total{result="already_exists"}': 1,
            "shmbroker_reclaim_latency_seconds_count": 1,
            'shmbroker_buffers{backing="posix"}': 1,
            "shmbroker_holds": 3,
            'shmbroker_leases_ended_total{reason="lease_expired"}': 1,
            "shmbroker_lease_expiry_reclaim_latency_seconds_count": 1,
        }
        for promql, minimum in events.items():
            poll(lambda: (scalar(base, promql) or 0) >= minimum, f"{promql} >= {minimum}")
        log("Prometheus has the events")

        pending = {}
        for title, ref, expr in queries:
            q = (expr.replace("${instance}", target).replace("$instance", target)
                 .replace("$__rate_interval", RATE_INTERVAL).replace("${__rate_interval}", RATE_INTERVAL)
                 .replace("$__interval", RATE_INTERVAL).replace("${__interval}", RATE_INTERVAL))
            check("$" not in q, f"panel {title!r} {ref}: unsubstituted variable in {q}")
            pending[(title, ref)] = q
        empty_ok = {(t, r) for t, refs in MAY_BE_EMPTY.items() for r in refs}
        answers = {}

        def all_have_data():
            for key, q in pending.items():
                answers[key] = query(base, q)  # raises unless status success
            missing = [k for k in pending if k not in empty_ok and not has_data(answers[k])]
            check(not missing, "no data yet for " + "; ".join(
                f"{t!r} {r}: {pending[(t, r)]} -> {answers[(t, r)]}" for t, r in missing))
            return True

        poll(all_have_data, "every panel query to return data", interval=0.5)
        for (title, ref), result in answers.items():
            values = ", ".join(f"{series['metric'] or '{}'}={series['value'][1]}" for series in result[:4])
            log(f"ok {title!r} {ref}: {len(result)} series: {values}"
                + (" ..." if len(result) > 4 else ""))

        # The shipped alerting rules load and evaluate against the live data.
        def rules_evaluated():
            groups = api(base, "/api/v1/rules")["groups"]
            rules = [r for g in groups for r in g["rules"]]
            bad = [(r["name"], r.get("health"), r.get("lastError")) for r in rules
                   if r.get("health") != "ok"]
            check(rules and not bad, f"rules not (yet) healthy: {bad or 'none loaded'}")
            return rules

        rules = poll(rules_evaluated, "the alerting rules to be evaluated")
        names = sorted(r["name"] for r in rules)
        with open(os.path.join(ROOT, "deploy", "prometheus", "alerts.yml")) as f:
            shipped = sorted(re.findall(r"^\s*- alert: (\S+)", f.read(), re.M))
        check(names == shipped, f"Prometheus loaded {names}, alerts.yml has {shipped}")
        firing = [a["labels"]["alertname"] for a in api(base, "/api/v1/alerts")["alerts"]
                  if a["state"] == "firing"]
        check(not firing, f"alerts firing on a healthy daemon: {firing}")
        log(f"Prometheus loaded and evaluated {names}; none firing")
    except BaseException:
        print(s.logs(), file=sys.stderr)
        raise
    finally:
        s.close()


def main():
    # Turn SIGTERM (ctest timeout, Ctrl-C from a wrapper) into an exception so
    # that the cleanup in live() runs.
    def stop(signum, frame):
        raise SystemExit(f"check_dashboard: stopped by signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    try:
        queries = lint(documented_metrics())
        if "--lint-only" not in sys.argv[1:]:
            live(queries)
    except Failure as e:
        print(f"check_dashboard: FAIL: {e}", file=sys.stderr)
        return 1
    log("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
