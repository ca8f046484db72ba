"""Shared helpers of the observability end-to-end tests.

Everything runs for real: the real shmbrokerd on a socket in a fresh
temporary directory, the real `shmbroker` CLI as separate processes, real
HTTP scrapes of /metrics. Standard library only (plus Debian's python3-grpcio
in the gRPC helpers, imported lazily). Run with /usr/bin/python3.

Binaries:
- shmbrokerd: argv[1], else $SHMBROKERD, else build/server/shmbrokerd in the
  source tree;
- shmbroker (CLI): $SHMBROKER_CLI, else build/client/shmbroker.

A test is a function passed to run_test(): it raises Failure (via check() /
fail()) on failure; run_test() prints "FAIL: ..." plus the logs of every
daemon it started and exits 1, or prints one "PASS: ..." line and exits 0.
Every process and temporary directory started through this module is
cleaned up on the way out, also on failure, on SIGTERM/SIGINT, and (through
PR_SET_PDEATHSIG via setpriv) if this interpreter is killed outright.
"""

import json
import math
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))

READY_RE = re.compile(r"^shmbrokerd: listening on (\S+)\s*$")
METRICS_RE = re.compile(r"^shmbrokerd: metrics on (http://[^\s/]+:(\d+)/metrics)\s*$")


class Failure(Exception):
    """A check failed; the message says what was expected and what was seen."""


class Fatal(Failure):
    """A failure that poll_until() does not retry (e.g. the process exited)."""


def fail(message):
    raise Failure(message)


def fatal(message):
    raise Fatal(message)


def check(condition, message):
    if not condition:
        raise Failure(message)


def check_eq(actual, expected, what):
    if actual != expected:
        raise Failure(f"{what}: expected {expected!r}, got {actual!r}")


def check_ge(actual, minimum, what):
    if actual is None or actual < minimum:
        raise Failure(f"{what}: expected >= {minimum!r}, got {actual!r}")


# ---------------------------------------------------------------------------
# Cleanup of everything this process started.

_processes = []   # Popen objects, stopped in reverse order
_dirs = []        # temporary directories, removed at the end
_daemons = []     # Daemon objects, whose logs are shown on failure
_SETPRIV = shutil.which("setpriv")


def _pdeathsig_prefix(sig_name):
    # setpriv sets PR_SET_PDEATHSIG and execs: the child keeps its pid and is
    # signalled if this interpreter dies without cleaning up (e.g. SIGKILL
    # from a CTest timeout).
    if _SETPRIV:
        return [_SETPRIV, f"--pdeathsig={sig_name}", "--"]
    return []


def make_temp_dir(prefix="shmbroker-obs-"):
    path = tempfile.mkdtemp(prefix=prefix)
    os.chmod(path, 0o711)
    _dirs.append(path)
    return path


def spawn(argv, stdout_path, stderr_path, env=None, stdin=subprocess.DEVNULL,
          pdeathsig="TERM"):
    """Starts argv with stdout and stderr going to files; tracked for cleanup."""
    out = open(stdout_path, "wb")
    err = open(stderr_path, "wb") if stderr_path != stdout_path else out
    try:
        proc = subprocess.Popen(_pdeathsig_prefix(pdeathsig) + list(argv),
                                stdin=stdin, stdout=out, stderr=err, env=env,
                                close_fds=True)
    finally:
        out.close()
        if err is not out:
            err.close()
    proc.argv_for_messages = list(argv)
    _processes.append(proc)
    return proc


def stop_process(proc, sig=signal.SIGTERM, timeout=20):
    """Signals proc (if still running) and reaps it; SIGKILL after timeout."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


def cleanup():
    while _processes:
        proc = _processes.pop()
        try:
            stop_process(proc, signal.SIGTERM, timeout=15)
        except Exception as e:  # keep cleaning up the rest
            print(f"cleanup: could not stop pid {proc.pid}: {e}", file=sys.stderr)
    while _dirs:
        shutil.rmtree(_dirs.pop(), ignore_errors=True)


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def tail(text, lines=40):
    parts = text.splitlines()
    if len(parts) > lines:
        return "\n".join([f"... ({len(parts) - lines} earlier lines)"] + parts[-lines:])
    return "\n".join(parts)


def run_test(name, body):
    """Runs body() and exits: 0 with one PASS line, 1 with a FAIL message."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    status = 1
    try:
        summary = body()
        status = 0
        print(f"PASS: {name}: {summary}" if summary else f"PASS: {name}")
    except Failure as e:
        print(f"FAIL: {name}: {e}", file=sys.stderr)
        _dump_daemon_logs()
    except KeyboardInterrupt as e:
        print(f"FAIL: {name}: interrupted ({e})", file=sys.stderr)
    except Exception:
        print(f"FAIL: {name}: unexpected error:\n{traceback.format_exc()}",
              file=sys.stderr)
        _dump_daemon_logs()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        cleanup()
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(status)


def show_logs_on_failure(obj):
    """Registers obj (with .label, .stdout_path, .stderr_path) for log dumps."""
    if obj not in _daemons:
        _daemons.append(obj)


def _dump_daemon_logs():
    for d in _daemons:
        print(f"--- {d.label} stdout ({d.stdout_path}):\n{tail(read_text(d.stdout_path))}",
              file=sys.stderr)
        print(f"--- {d.label} stderr ({d.stderr_path}):\n{tail(read_text(d.stderr_path))}",
              file=sys.stderr)


# ---------------------------------------------------------------------------
# Polling: never a fixed sleep for correctness.

def poll_until(fn, timeout=20.0, interval=0.05, what="condition"):
    """Calls fn() until it returns a truthy value, which is returned.

    Exceptions from fn count as "not yet". At the deadline, raises Failure
    naming `what` and the last value or exception seen.
    """
    deadline = time.monotonic() + timeout
    last = None
    delay = interval
    while True:
        try:
            value = fn()
            if value:
                return value
            last = f"last value: {value!r}"
        except Fatal:
            raise
        except Failure as e:
            last = f"last check: {e}"
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = f"last error: {type(e).__name__}: {e}"
        if time.monotonic() >= deadline:
            raise Failure(f"timed out after {timeout:g}s waiting for {what} ({last})")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


# ---------------------------------------------------------------------------
# Binaries.

def _source_build(*parts):
    return os.path.join(SOURCE_ROOT, "build", *parts)


def daemon_path():
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    path = (args[0] if args else
            os.environ.get("SHMBROKERD") or _source_build("server", "shmbrokerd"))
    if not os.access(path, os.X_OK):
        fail(f"shmbrokerd not found or not executable at {path!r} "
             "(pass it as the first argument or set $SHMBROKERD)")
    return path


def cli_path():
    path = os.environ.get("SHMBROKER_CLI") or _source_build("client", "shmbroker")
    if not os.access(path, os.X_OK):
        fail(f"shmbroker CLI not found or not executable at {path!r} (set $SHMBROKER_CLI)")
    return path


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------
# The daemon.

class Daemon:
    """shmbrokerd on DIR/run/broker.sock, stdout and stderr in files in DIR.

    start() waits for `shmbrokerd: metrics on URL` (unless expect_metrics is
    False) and then `shmbrokerd: listening on PATH`, in that order.
    """

    def __init__(self, flags=(), expect_metrics=True, label="shmbrokerd"):
        self.dir = make_temp_dir()
        self.socket = os.path.join(self.dir, "run", "broker.sock")
        self.stdout_path = os.path.join(self.dir, "daemon.stdout")
        self.stderr_path = os.path.join(self.dir, "daemon.stderr")
        self.flags = list(flags)
        self.expect_metrics = expect_metrics
        self.label = label
        self.proc = None
        self.metrics_url = None
        self.metrics_port = None
        self.stdout_lines = []

    def start(self, timeout=30.0):
        argv = [daemon_path(), f"--socket={self.socket}"] + self.flags
        self.proc = spawn(argv, self.stdout_path, self.stderr_path)
        _daemons.append(self)

        def ready():
            if self.proc.poll() is not None:
                fatal(f"{self.label} exited with status {self.proc.returncode} before "
                     f"it was ready; stderr:\n{tail(read_text(self.stderr_path))}")
            lines = read_text(self.stdout_path).splitlines()
            return lines if any(READY_RE.match(l) for l in lines) else None

        try:
            lines = poll_until(ready, timeout=timeout,
                               what=f"'{self.label}: listening on' on stdout")
        except Fatal:
            raise
        except Failure as e:
            raise Failure(f"{e}\nstdout so far:\n{read_text(self.stdout_path)}"
                          f"\nstderr so far:\n{tail(read_text(self.stderr_path))}") from None
        self.stdout_lines = lines
        ready_idx = next(i for i, l in enumerate(lines) if READY_RE.match(l))
        check_eq(READY_RE.match(lines[ready_idx]).group(1), self.socket,
                 "socket path in the 'listening on' line")
        metrics_idx = [i for i, l in enumerate(lines) if METRICS_RE.match(l)]
        if self.expect_metrics:
            check(metrics_idx, "no 'shmbrokerd: metrics on http://HOST:PORT/metrics' line on "
                  f"stdout; stdout was:\n{''.join(l + chr(10) for l in lines)}")
            check(metrics_idx[0] < ready_idx,
                  "the 'metrics on' line must come before the 'listening on' line; "
                  f"stdout was: {lines!r}")
            m = METRICS_RE.match(lines[metrics_idx[0]])
            self.metrics_url = m.group(1)
            self.metrics_port = int(m.group(2))
            check(self.metrics_port != 0, f"metrics URL has port 0: {self.metrics_url}")
        else:
            check(not metrics_idx, f"unexpected metrics line with metrics disabled: {lines!r}")
        return self

    def stderr_text(self):
        return read_text(self.stderr_path)

    def stop(self, timeout=20):
        """SIGTERM and wait; returns the exit status."""
        return stop_process(self.proc, signal.SIGTERM, timeout)

    # -- CLI against this daemon ------------------------------------------

    def cli(self, *args, timeout=30, input_bytes=None):
        return run_cli(self.socket, *args, timeout=timeout, input_bytes=input_bytes)

    def cli_ok(self, *args, timeout=30):
        r = self.cli(*args, timeout=timeout)
        check(r.returncode == 0,
              f"`shmbroker {' '.join(args)}` exited {r.returncode}; stderr: {r.stderr.strip()!r}")
        return r

    def cli_json(self, *args):
        r = self.cli_ok("--json", *args)
        try:
            return json.loads(r.stdout)
        except ValueError as e:
            fail(f"`shmbroker --json {' '.join(args)}` printed no JSON ({e}): {r.stdout!r}")

    def hold(self, size, *extra, hold="300s", label=None):
        """Starts `shmbroker alloc SIZE [extra] --hold=…` and waits until it holds."""
        return Holder(self, ["alloc", size] + list(extra), hold, label).wait_holding()

    def hold_put(self, name, path, *extra, hold="300s", label=None):
        """Starts `shmbroker put NAME --file=PATH [extra] --hold=…`; waits until it holds."""
        return Holder(self, ["put", name, f"--file={path}"] + list(extra), hold,
                      label).wait_holding()

    def status(self):
        return self.cli_json("status")

    # -- metrics ------------------------------------------------------------

    def scrape_text(self, timeout=10):
        check(self.metrics_url, "the daemon has no metrics URL")
        if self.proc.poll() is not None:
            fatal(f"{self.label} exited with status {self.proc.returncode}")
        return http_get(self.metrics_url, timeout=timeout)[1]

    def scrape(self):
        return parse_prometheus(self.scrape_text())


class CliResult:
    def __init__(self, argv, returncode, stdout, stderr):
        self.argv, self.returncode, self.stdout, self.stderr = argv, returncode, stdout, stderr

    def __repr__(self):
        return (f"CliResult(argv={self.argv!r}, rc={self.returncode}, stdout={self.stdout!r}, "
                f"stderr={self.stderr!r})")


def run_cli(socket_path, *args, timeout=30, input_bytes=None):
    """Runs the CLI to the end with --socket first; returns a CliResult."""
    argv = [cli_path(), f"--socket={socket_path}"] + [str(a) for a in args]
    try:
        r = subprocess.run(_pdeathsig_prefix("KILL") + argv, input=input_bytes,
                           stdin=None if input_bytes is not None else subprocess.DEVNULL,
                           capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        fail(f"`{' '.join(argv)}` did not finish within {timeout}s")
    return CliResult(argv, r.returncode, r.stdout.decode("utf-8", "replace"),
                     r.stderr.decode("utf-8", "replace"))


class Holder:
    """A real `shmbroker alloc|put ... --hold=DURATION` process."""

    _count = 0

    def __init__(self, daemon, command, hold, label):
        Holder._count += 1
        self.daemon = daemon
        self.label = label or f"holder{Holder._count}"
        base = os.path.join(daemon.dir, self.label)
        self.stdout_path, self.stderr_path = base + ".stdout", base + ".stderr"
        self.argv = ([cli_path(), f"--socket={daemon.socket}"] + [str(a) for a in command] +
                     [f"--hold={hold}"])
        self.proc = spawn(self.argv, self.stdout_path, self.stderr_path)
        self.pid = self.proc.pid
        self.handle = None

    def wait_holding(self, timeout=20):
        def holding():
            # The CLI prints the buffer on stdout, "holding buffer N; ..." on stderr.
            out = read_text(self.stdout_path)
            m = re.search(r"holding buffer (\d+)", read_text(self.stderr_path) + out)
            if m:
                return m
            if self.proc.poll() is not None:
                fatal(f"{self.label} (`{' '.join(self.argv[1:])}`) exited {self.proc.returncode} "
                     f"without holding; stdout: {out!r}; stderr: {read_text(self.stderr_path)!r}")
            return None

        m = poll_until(holding, timeout=timeout, what=f"{self.label} to say 'holding buffer'")
        self.handle = int(m.group(1))
        return self

    def kill(self):
        """SIGKILL: the process dies without releasing anything."""
        return stop_process(self.proc, signal.SIGKILL)

    def terminate(self):
        return stop_process(self.proc, signal.SIGTERM)


# ---------------------------------------------------------------------------
# HTTP and the Prometheus text format.

# Families without the shmbroker_ prefix that the tests accept on /metrics
# (and require in docs/metrics.md): prometheus-cpp's Exposer adds these three
# to every endpoint and cannot be told not to. docs/metrics.md documents them
# as the only exception; nothing else may lack the prefix.
ALLOWED_FOREIGN_FAMILIES = frozenset({
    "exposer_scrapes_total",
    "exposer_transferred_bytes_total",
    "exposer_request_latencies",
})

# The metric families of the contract, with their types.
CONTRACT_FAMILIES = {
    "shmbroker_build_info": "gauge",
    "shmbroker_capacity_bytes": "gauge",
    "shmbroker_allocated_bytes": "gauge",
    "shmbroker_resident_bytes": "gauge",
    "shmbroker_tenant_allocated_bytes": "gauge",
    "shmbroker_tenant_buffers": "gauge",
    "shmbroker_buffers": "gauge",
    "shmbroker_holds": "gauge",
    "shmbroker_allocations_total": "counter",
    "shmbroker_releases_total": "counter",
    "shmbroker_reclaims_total": "counter",
    "shmbroker_reclaimed_bytes_total": "counter",
    "shmbroker_client_connections": "gauge",
    "shmbroker_client_connections_opened_total": "counter",
    "shmbroker_client_connections_closed_total": "counter",
    "shmbroker_client_deaths_total": "counter",
    "shmbroker_reclaim_latency_seconds": "histogram",
    "shmbroker_permission_denials_total": "counter",
    "shmbroker_open_fds": "gauge",
    "shmbroker_max_fds": "gauge",
    "shmbroker_rpc_duration_seconds": "histogram",
    "shmbroker_leases": "gauge",
    "shmbroker_leases_granted_total": "counter",
    "shmbroker_leases_ended_total": "counter",
    "shmbroker_keepalives_total": "counter",
    "shmbroker_lease_expiry_reclaim_latency_seconds": "histogram",
}

# No proxies: everything here is on 127.0.0.1, whatever $http_proxy says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url, timeout=10):
    """Returns (headers, body text); raises Failure on a non-200 answer."""
    try:
        with _OPENER.open(url, timeout=timeout) as r:
            return r.headers, r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        fail(f"GET {url}: HTTP {e.code}: {e.read()[:500]!r}")
    except (urllib.error.URLError, OSError) as e:
        fail(f"GET {url}: {e}")


def http_get_json(url, timeout=10):
    return json.loads(http_get(url, timeout)[1])


class Exposition:
    """A parsed scrape.

    samples: {(name, frozenset(labels.items())): value}
    types:   {family: type} from "# TYPE" lines
    helps:   {family: text} from "# HELP" lines
    """

    def __init__(self, samples, types, helps, text):
        self.samples, self.types, self.helps, self.text = samples, types, helps, text

    def get(self, name, **labels):
        """The value of the sample with exactly these labels, or None."""
        return self.samples.get((name, frozenset(labels.items())))

    def value(self, name, **labels):
        """Like get(), but a missing sample is a Failure listing what exists."""
        v = self.get(name, **labels)
        if v is None:
            present = sorted(_fmt_key(k) for k in self.samples if k[0] == name)
            fail(f"no sample {_fmt(name, labels)} on /metrics; samples of {name}: "
                 f"{present if present else 'none'}")
        return v

    def select(self, name, **labels):
        """{frozenset(labels): value} of every sample of `name` whose labels
        include the given ones."""
        want = set(labels.items())
        return {k[1]: v for k, v in self.samples.items() if k[0] == name and want <= k[1]}

    def total(self, name, **labels):
        return sum(self.select(name, **labels).values())


def _fmt(name, labels):
    if not labels:
        return name
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(dict(labels).items()))
    return f"{name}{{{inner}}}"


def _fmt_key(key):
    return _fmt(key[0], dict(key[1]))


_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"

_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _parse_labels(text, line):
    # text is "{...}" including the braces.
    labels = {}
    i, n = 1, len(text) - 1
    while i < n:
        while i < n and text[i] in " ,":
            i += 1
        if i >= n:
            break
        m = _LABEL_NAME_RE.match(text, i)
        if not m:
            fail(f"bad label name in line: {line!r}")
        key = m.group(0)
        i = m.end()
        while i < n and text[i] == " ":
            i += 1
        if i >= n or text[i] != "=":
            fail(f"expected '=' after label {key!r} in line: {line!r}")
        i += 1
        while i < n and text[i] == " ":
            i += 1
        if i >= n or text[i] != '"':
            fail(f"expected '\"' for label {key!r} in line: {line!r}")
        i += 1
        value = []
        while True:
            if i >= n:
                fail(f"unterminated label value in line: {line!r}")
            c = text[i]
            if c == "\\":
                nxt = text[i + 1] if i + 1 < n else ""
                value.append({"n": "\n", "\\": "\\", '"': '"'}.get(nxt, "\\" + nxt))
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                value.append(c)
                i += 1
        if key in labels:
            fail(f"duplicate label {key!r} in line: {line!r}")
        labels[key] = "".join(value)
    return labels


def _parse_value(s, line):
    special = {"+Inf": math.inf, "Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    if s in special:
        return special[s]
    try:
        return float(s)
    except ValueError:
        fail(f"bad sample value {s!r} in line: {line!r}")


def parse_prometheus(text):
    """Parses the Prometheus text exposition format (0.0.4)."""
    samples, types, helps = {}, {}, {}
    for raw in text.split("\n"):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] == "TYPE":
                if parts[2] in types:
                    fail(f"second TYPE line for {parts[2]}: {line!r}")
                types[parts[2]] = parts[3].strip() if len(parts) > 3 else ""
            elif len(parts) >= 3 and parts[1] == "HELP":
                helps[parts[2]] = parts[3] if len(parts) > 3 else ""
            continue
        # Split name{labels} from the value, minding '}' inside label values.
        m = re.match(rf"^({_NAME})", line)
        if not m:
            fail(f"bad sample line: {line!r}")
        name = m.group(1)
        rest = line[m.end():]
        labels = {}
        if rest.startswith("{"):
            j, in_str, esc = 1, False, False
            while j < len(rest):
                c = rest[j]
                if esc:
                    esc = False
                elif c == "\\":
                    esc = True
                elif c == '"':
                    in_str = not in_str
                elif c == "}" and not in_str:
                    break
                j += 1
            if j >= len(rest):
                fail(f"unterminated label set in line: {line!r}")
            labels = _parse_labels(rest[:j + 1], line)
            rest = rest[j + 1:]
        fields = rest.split()
        if not fields or len(fields) > 2:
            fail(f"bad sample line (expected value [timestamp]): {line!r}")
        key = (name, frozenset(labels.items()))
        if key in samples:
            fail(f"duplicate sample {_fmt_key(key)} on /metrics")
        samples[key] = _parse_value(fields[0], line)
    return Exposition(samples, types, helps, text)


def family_of(sample_name, types):
    """The family a sample belongs to (histogram/summary suffixes stripped)."""
    if sample_name in types:
        return sample_name
    for suffix in ("_bucket", "_count", "_sum", "_created", "_total", "_info"):
        if sample_name.endswith(suffix):
            base = sample_name[: -len(suffix)]
            if base in types:
                return base
    return None


def check_histogram(expo, name, **labels):
    """Checks one histogram series is well-formed; returns its _count."""
    buckets = {}
    for key, v in expo.samples.items():
        if key[0] != name + "_bucket":
            continue
        d = dict(key[1])
        le = d.pop("le", None)
        if d == labels and le is not None:
            buckets[_parse_value(le, f"le={le}")] = v
    count = expo.value(name + "_count", **labels)
    expo.value(name + "_sum", **labels)
    what = _fmt(name, labels)
    check(math.inf in buckets, f"{what}: no le=\"+Inf\" bucket (buckets: {sorted(buckets)})")
    check_eq(buckets[math.inf], count, f"{what}: +Inf bucket vs _count")
    ordered = [buckets[k] for k in sorted(buckets)]
    check(all(a <= b for a, b in zip(ordered, ordered[1:])),
          f"{what}: bucket counts are not cumulative: {sorted(buckets.items())}")
    return count


def promtool_check_metrics(text):
    """Runs `promtool check metrics` on text; returns (returncode, output)."""
    promtool = shutil.which("promtool")
    check(promtool, "promtool not found on PATH (Debian package: prometheus)")
    r = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=60)
    return r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace").strip()


# ---------------------------------------------------------------------------
# gRPC over the daemon's Unix socket, by hand-encoded protobuf (no generated
# code; Debian's python3-grpcio only).

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVING, NOT_SERVING = 1, 2


def encode_varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def decode_fields(data):
    """Decodes one protobuf message into {field: [values]} (varint/len only)."""
    fields, i = {}, 0
    while i < len(data):
        key, i = _read_varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _read_varint(data, i)
        elif wire == 2:
            ln, i = _read_varint(data, i)
            v, i = data[i:i + ln], i + ln
        elif wire == 1:
            v, i = data[i:i + 8], i + 8
        elif wire == 5:
            v, i = data[i:i + 4], i + 4
        else:
            fail(f"unsupported protobuf wire type {wire} in {data!r}")
        fields.setdefault(field, []).append(v)
    return fields


def _read_varint(data, i):
    shift = result = 0
    while True:
        if i >= len(data):
            fail(f"truncated varint in {data!r}")
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def import_grpc():
    try:
        import grpc  # Debian: python3-grpcio
    except ImportError as e:
        fail(f"cannot import grpc ({e}): install Debian's python3-grpcio and run with "
             f"/usr/bin/python3 (this is {sys.executable})")
    return grpc


def grpc_channel(socket_path):
    grpc = import_grpc()
    return grpc.insecure_channel(f"unix:{socket_path}", options=[("grpc.enable_http_proxy", 0)])


def grpc_unary(channel, method, request=b"", metadata=None, timeout=10):
    """Calls method with raw request bytes.

    Returns (status code, response bytes or None, details)."""
    grpc = import_grpc()
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        resp = call(request, timeout=timeout, metadata=metadata)
        return grpc.StatusCode.OK, resp, ""
    except grpc.RpcError as e:
        return e.code(), None, e.details()


def health_status(channel, service=""):
    """grpc.health.v1.Health/Check; returns the status enum (1 SERVING, 2 NOT_SERVING)."""
    grpc = import_grpc()
    raw = service.encode()
    request = b"\x0a" + encode_varint(len(raw)) + raw if raw else b""  # field 1, string
    code, resp, details = grpc_unary(channel, HEALTH_CHECK, request)
    check(code == grpc.StatusCode.OK, f"Health/Check(service={service!r}) failed: {code} {details}")
    fields = decode_fields(resp)
    # proto3: a status of 0 (UNKNOWN) is simply absent.
    return fields.get(1, [0])[-1]


class FdSession:
    """A client connection of our own: the fd channel (PATH.fds) and its token.

    Frame (168 bytes, host order): u32 magic, u16 version, u16 type, u64 id,
    u64 handle, 16-byte token, 128-byte text (common/fd_channel_protocol.h).
    """

    FRAME = struct.Struct("=IHHQQ16s128s")
    HELLO = 1

    def __init__(self, socket_path, timeout=10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(timeout)
        self.sock.connect(socket_path + ".fds")
        data = self.sock.recv(4096)
        check(len(data) == self.FRAME.size,
              f"fd channel hello: expected a {self.FRAME.size}-byte frame, got {len(data)} bytes")
        magic, version, ftype, sid, _handle, token, _text = self.FRAME.unpack(data)
        check(ftype == self.HELLO, f"fd channel: first frame has type {ftype}, expected kHello (1)")
        self.session_id = sid
        self.token_hex = token.hex()

    def metadata(self):
        return (("shmbroker-session", self.token_hex),)

    def close(self):
        self.sock.close()


def encode_release_request(handle):
    return b"\x08" + encode_varint(handle)  # ReleaseRequest.handle = 1
