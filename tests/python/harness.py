"""What tests/python share: a real shmbrokerd on a socket in a temporary
directory, waiting for state with a deadline (never a sleep against a TTL),
and running Python code in another real process.

Environment (set by CTest, tests/python/CMakeLists.txt): SHMBROKERD, the
daemon binary; PYTHONPATH, the build tree's package.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

READY_RE = re.compile(r"^shmbrokerd: listening on (\S+)\s*$", re.M)


def wait_for(fn, timeout=20.0, what="condition"):
    """Calls fn() until it returns a truthy value (returned); fails the test
    at the deadline with the last value or error."""
    deadline = time.monotonic() + timeout
    delay, last = 0.01, None
    while True:
        try:
            value = fn()
            if value:
                return value
            last = repr(value)
        except Exception as e:  # noqa: BLE001 - "not yet" until the deadline
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what} "
                                 f"(last: {last})")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


class Daemon:
    """shmbrokerd on DIR/broker.sock; start() waits for its 'listening on'."""

    def __init__(self, *flags):
        self.dir = tempfile.mkdtemp(prefix="shmbroker-py-")
        self.socket = os.path.join(self.dir, "broker.sock")
        self.log = os.path.join(self.dir, "daemon.log")
        self.flags = list(flags)
        self._start()

    def _start(self):
        argv = [os.environ.get("SHMBROKERD", "shmbrokerd"), f"--socket={self.socket}",
                "--metrics_address="] + self.flags
        setpriv = shutil.which("setpriv")
        prefix = [setpriv, "--pdeathsig=TERM", "--"] if setpriv else []
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(prefix + argv, stdout=out, stderr=out,
                                         stdin=subprocess.DEVNULL)
        wait_for(self._ready, what="shmbrokerd's 'listening on' line")

    def restart(self, sig=signal.SIGKILL):
        """Stops the daemon with `sig` and starts a new one on the same
        socket and state directory (its books beside the socket)."""
        self.proc.send_signal(sig)
        self.proc.wait(timeout=20)
        self._start()

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"shmbrokerd exited ({self.proc.returncode}):\n"
                                 + self.log_text())
        return READY_RE.search(self.log_text())

    def log_text(self):
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            # A stop for good (SIGTERM keeps the books for a successor).
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def python(code, *args, timeout=60, check=True):
    """Runs `code` in a new /usr/bin/python3 (this interpreter) to its end;
    returns its stdout. argv[1:] are `args`."""
    result = subprocess.run([sys.executable, "-c", code] + [str(a) for a in args],
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"child python failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


class DaemonTest(unittest.TestCase):
    """One daemon per test class (FLAGS); each test starts and must end with
    no buffers in it."""

    FLAGS = ()

    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon(*cls.FLAGS)

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()

    def setUp(self):
        import shmbroker
        self.client = shmbroker.Client(self.daemon.socket)

    def tearDown(self):
        import gc
        gc.collect()
        observer = __import__("shmbroker").Client(self.daemon.socket)
        try:
            self.wait_buffers(0, observer)
        finally:
            self.client.close()
            observer.close()

    def wait_buffers(self, n, client=None, timeout=20.0):
        client = client or self.client

        def settled():
            have = client.status().buffers
            if have == n:
                return True
            # What wait_for shows at the deadline: who holds what is left.
            raise AssertionError(f"{have} buffers: " + "; ".join(
                f"{b.handle} {b.kind} {b.holders} holder(s), owner pid {b.owner_pid}"
                for b in client.ls()[:8]))

        wait_for(settled, timeout=timeout, what=f"the daemon to have {n} buffers")
