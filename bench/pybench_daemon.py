"""What the Python benches share: a shmbrokerd of their own on a temporary
socket, and size arguments. Not a bench itself.

The benches run from the repository as `bench/NAME.py`, so this module is
found next to them (sys.path[0] is bench/).
"""

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading

UNITS = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def parse_size(text):
    for unit, factor in UNITS.items():
        if text.endswith(unit):
            return int(text[: -len(unit)]) * factor
    return int(text)


def state_tmpfs():
    """Where to put a spawned daemon's directory (its socket, and its books
    in `state` beside it): /dev/shm, a tmpfs as /run is where a deployed
    daemon keeps them, unless $TMPDIR says otherwise; /tmp may be a disk
    whose journaled writes no deployment pays."""
    if os.environ.get("TMPDIR"):
        return None
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


@contextlib.contextmanager
def spawned_daemon(build, *flags):
    """Starts BUILD/server/shmbrokerd on a temporary socket, sets
    $SHMBROKER_SOCKET to it (for this process and every child it starts) and
    yields the daemon's Popen (`.socket` is the socket path); terminates the
    daemon (SIGINT) on the way out."""
    tmpdir = tempfile.mkdtemp(prefix="shmbroker-pybench.", dir=state_tmpfs())
    socket = os.path.join(tmpdir, "broker.sock")
    log = open(os.path.join(tmpdir, "shmbrokerd.log"), "w")
    daemon = subprocess.Popen(
        [os.path.join(build, "server", "shmbrokerd"), f"--socket={socket}",
         "--metrics_address=", "--capacity=8GiB", *flags],
        stdout=subprocess.PIPE, stderr=log, text=True)
    previous = os.environ.get("SHMBROKER_SOCKET")
    try:
        line = daemon.stdout.readline()
        while line.startswith("shmbrokerd: metrics on"):
            line = daemon.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"shmbrokerd did not start: {line!r}")
        # Whatever else it prints must not fill a pipe nobody reads.
        threading.Thread(target=daemon.stdout.read, daemon=True).start()
        os.environ["SHMBROKER_SOCKET"] = socket
        daemon.socket = socket
        yield daemon
    finally:
        if previous is None:
            os.environ.pop("SHMBROKER_SOCKET", None)
        else:
            os.environ["SHMBROKER_SOCKET"] = previous
        died = daemon.poll()
        # SIGINT: a stop for good (SIGTERM would keep the books for a
        # successor, and posix names with them).
        daemon.send_signal(signal.SIGINT)
        daemon.wait(timeout=10)
        log.close()
        if died is None:
            shutil.rmtree(tmpdir, ignore_errors=True)
        else:  # keep its log
            print(f"shmbrokerd exited early ({died}): see {log.name}")


def cpu_and_faults(pid):
    """(user + system CPU seconds, minor page faults) of process `pid` so
    far, from /proc/PID/stat; (0, 0) once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0, 0
    # After the ")": state is field 3, minflt 10, utime 14, stime 15.
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks, int(fields[7])


def usage_of_command(comm):
    """cpu_and_faults summed over every process running `comm` now."""
    cpu, faults = 0.0, 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != comm[:15]:  # comm is truncated
                    continue
        except OSError:
            continue
        c, f = cpu_and_faults(pid)
        cpu, faults = cpu + c, faults + f
    return cpu, faults
