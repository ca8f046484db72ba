"""A real shmbrokerd and a real Prometheus scraping it, for the deploy checks
(check_dashboard.py): processes a Session owns and ends, readiness polled
with a deadline, and instant queries through Prometheus's HTTP API.

Failures raise Failure (a check that did not hold, or a deadline passed);
a query Prometheus rejects as bad (HTTP 400) exits at once, as polling it
again cannot help.
"""

import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

DEADLINE = 60.0  # seconds; the first scrape lands ~5 s after Prometheus starts
# Log lines and failures name the script that runs.
PREFIX = os.path.splitext(os.path.basename(sys.argv[0]))[0]


class Failure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


def log(message):
    print(f"{PREFIX}: {message}", flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def poll(fn, what, deadline=DEADLINE, interval=0.25):
    """Calls fn until it returns a true value; the last error is reported."""
    end = time.monotonic() + deadline
    last = None
    while True:
        try:
            value = fn()
            if value:
                return value
        except (Failure, OSError, urllib.error.URLError, ValueError) as e:
            last = e
        if time.monotonic() > end:
            raise Failure(f"timed out after {deadline:.0f}s waiting for {what}"
                          + (f": {last}" if last else ""))
        time.sleep(interval)


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


class Session:
    """Owns every process and the temp dir; close() ends them all."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="shmbroker-deploy-dash-")
        self.procs = []  # (label, Popen, stdout path, stderr path)

    def spawn(self, label, argv, stdin=subprocess.DEVNULL):
        out = os.path.join(self.dir, f"{label}.stdout")
        err = os.path.join(self.dir, f"{label}.stderr")
        with open(out, "w") as o, open(err, "w") as e:
            proc = subprocess.Popen(argv, stdin=stdin, stdout=o, stderr=e)
        self.procs.append((label, proc, out, err))
        return proc, out, err

    def logs(self):
        parts = []
        for label, proc, out, err in self.procs:
            parts.append(f"--- {label} (pid {proc.pid}, exit {proc.poll()}) stderr:\n{tail(err)}")
        return "\n".join(parts)

    def close(self):
        # In the reverse of their start: the clients (their holds) before
        # the daemon they hold from.
        for label, proc, _, _ in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_daemon(s, shmbrokerd):
    sock = os.path.join(s.dir, "run", "broker.sock")
    # No books: a daemon that keeps them leaves the POSIX names still held
    # when it stops, for a successor to adopt, and none comes here.
    proc, out, err = s.spawn("shmbrokerd", [shmbrokerd, f"--socket={sock}",
                                            "--metrics_address=127.0.0.1:0",
                                            "--capacity=64MiB",
                                            "--state_dir=none"])

    def ready():
        check(proc.poll() is None, f"shmbrokerd exited {proc.returncode}:\n{tail(err)}")
        text = open(out).read()
        m = re.search(r"shmbrokerd: metrics on http://([0-9.]+:\d+)/metrics", text)
        return m.group(1) if m and "shmbrokerd: listening on" in text else None

    target = poll(ready, "shmbrokerd to print its metrics address and listen", deadline=20)
    log(f"shmbrokerd pid {proc.pid}: socket {sock}, metrics {target}")
    return sock, target


def start_prometheus(s, prometheus, target, rule_file, job):
    """Prometheus scraping `target` every second as `job`, with `rule_file`
    loaded, on a free port; returns its base URL."""
    config = os.path.join(s.dir, "prometheus.yml")
    with open(config, "w") as f:
        f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - {json.dumps(rule_file)}
scrape_configs:
  - job_name: {job}
    static_configs:
      - targets: ['{target}']
""")
    for attempt in range(3):  # the port was free when we looked; retry if taken since
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc, _, err = s.spawn(f"prometheus{attempt}", [
            prometheus, f"--config.file={config}",
            f"--storage.tsdb.path={os.path.join(s.dir, f'tsdb{attempt}')}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h"])

        def ready():
            if proc.poll() is not None:
                return "exited"
            http_get(base + "/-/ready", timeout=2)
            return "ready"

        if poll(ready, "Prometheus /-/ready") == "ready":
            log(f"prometheus pid {proc.pid} on {base}")
            return base
        if "address already in use" not in tail(err, 200):
            raise Failure(f"prometheus exited {proc.returncode} at start:\n{tail(err)}")
    raise Failure("prometheus could not bind a free port in 3 attempts")


def api(base, path, **params):
    url = base + path + ("?" + urllib.parse.urlencode(params, doseq=True) if params else "")
    try:
        answer = json.loads(http_get(url))
    except urllib.error.HTTPError as e:
        body = e.read().decode(errors="replace")
        if e.code == 400:  # a bad query stays bad: fail at once, do not poll
            raise SystemExit(f"{PREFIX}: FAIL: Prometheus rejected {params}: {body}")
        raise Failure(f"HTTP {e.code} from {path}: {body}")
    check(answer.get("status") == "success", f"{path} {params}: {answer}")
    return answer["data"]


def has_data(result):
    """At least one series with a value that is not NaN."""
    for series in result:
        value = series.get("value", [None, "NaN"])[1]
        if not math.isnan(float(value)):
            return True
    return False


def query(base, promql):
    """An instant query's result list (raises unless status is success)."""
    data = api(base, "/api/v1/query", query=promql)
    check(data.get("resultType") == "vector", f"{promql}: result type {data.get('resultType')}")
    return data["result"]


def scalar(base, promql):
    result = query(base, promql)
    return float(result[0]["value"][1]) if len(result) == 1 else None
