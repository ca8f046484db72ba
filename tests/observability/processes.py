"""Processes and temporary directories the observability tests start, all
cleaned up on the way out (cleanup()), and polling for a state with a
deadline (poll_until) instead of sleeping.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from checks import Failure, Fatal

_processes = []   # Popen objects, stopped in reverse order
_dirs = []        # temporary directories, removed at the end
_SETPRIV = shutil.which("setpriv")


def pdeathsig_prefix(sig_name):
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
        proc = subprocess.Popen(pdeathsig_prefix(pdeathsig) + list(argv),
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
