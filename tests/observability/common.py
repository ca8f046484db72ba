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
Every shmbrokerd must end cleanly: Daemon.stop() fails unless it exits 0
with no sanitizer report on stderr, and run_test() stops (and so checks)
every daemon the test left running before it says PASS.
Every process and temporary directory started through this module is
cleaned up on the way out, also on failure, on SIGTERM/SIGINT, and (through
PR_SET_PDEATHSIG via setpriv) if this interpreter is killed outright.

This module holds the daemon and the CLI; processes.py processes,
temporary directories and polling; checks.py the failures; exposition.py
HTTP and the Prometheus text format; metrics_doc.py docs/metrics.md;
wire.py gRPC and fd-channel sessions by hand. The tests import all of it
from here.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import traceback

# The tests import everything from here; the pieces live in their own modules.
from checks import Failure, Fatal, check, check_eq, check_ge, fail, fatal  # noqa: F401
from exposition import (ALLOWED_FOREIGN_FAMILIES, CONTRACT_FAMILIES,  # noqa: F401
                        Exposition, check_histogram, family_of, http_get,
                        http_get_json, parse_prometheus, promtool_check_metrics)
from metrics_doc import documented_families, documented_queries, metrics_doc_path  # noqa: F401
from processes import (cleanup, make_temp_dir, pdeathsig_prefix, poll_until,  # noqa: F401
                       read_text, spawn, stop_process, tail)
from wire import (HEALTH_CHECK, NOT_SERVING, SERVING, FdSession,  # noqa: F401
                  decode_fields, encode_release_request, encode_varint,
                  grpc_channel, grpc_unary, health_status, import_grpc)

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))

READY_RE = re.compile(r"^shmbrokerd: listening on (\S+)\s*$")
METRICS_RE = re.compile(r"^shmbrokerd: metrics on (http://[^\s/]+:(\d+)/metrics)\s*$")


_daemons = []     # Daemon objects (and others with logs), shown on failure

# What AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer print.
SANITIZER_REPORTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run_test(name, body):
    """Runs body() and exits: 0 with one PASS line, 1 with a FAIL message."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    status = 1
    try:
        summary = body()
        for d in _daemons:
            if isinstance(d, Daemon) and not d.stopped:
                d.stop()
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
        rc = d.proc.poll() if d.proc is not None else None
        print(f"--- {d.label}: {'running' if rc is None else f'exit status {rc}'}",
              file=sys.stderr)
        print(f"--- {d.label} stdout ({d.stdout_path}):\n{tail(read_text(d.stdout_path))}",
              file=sys.stderr)
        print(f"--- {d.label} stderr ({d.stderr_path}):\n{tail(read_text(d.stderr_path))}",
              file=sys.stderr)


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
        self.stopped = False
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
        """SIGINT (a stop for good: SIGTERM would keep the books and POSIX
        names for a successor) and wait; fails unless the daemon exits 0
        with no sanitizer report on stderr (also when it had died already)."""
        self.stopped = True
        rc = stop_process(self.proc, signal.SIGINT, timeout)
        stderr = self.stderr_text()
        problems = [f"exit status {rc}"] if rc > 0 else []
        if rc < 0:
            problems.append(f"killed by signal {-rc}" +
                            (" (it did not stop in time)" if rc == -signal.SIGKILL else ""))
        problems += [f"{r!r} on stderr" for r in SANITIZER_REPORTS if r in stderr]
        check(not problems, f"{self.label} did not exit cleanly on SIGINT: "
              f"{'; '.join(problems)}; stderr:\n{tail(stderr, 80)}")
        return rc

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
        r = subprocess.run(pdeathsig_prefix("KILL") + argv, input=input_bytes,
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
        """SIGTERM: the CLI releases what it holds and exits 0 (docs/cli.md)."""
        rc = stop_process(self.proc, signal.SIGTERM)
        check_eq(rc, 0, f"exit status of {self.label} on SIGTERM (stderr "
                 f"{read_text(self.stderr_path).strip()!r})")
        return rc
