"""The package installed two ways, each used against a real daemon by a
/usr/bin/python3 that has no build tree on its path:
1. `cmake --install BUILD --prefix P`, then P's dist-packages on PYTHONPATH
   (where Debian's python3 finds it under /usr or /usr/local);
2. `pip install --no-build-isolation --no-index python/` into a fresh
   `/usr/bin/python3 -m venv --system-site-packages` (setup.py drives CMake;
   nothing downloaded).
Usage: check_install.py BUILD_DIR"""

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

from harness import Daemon

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOKE = """
import sys, numpy, shmbroker
print(shmbroker.__file__)
buf = shmbroker.Client(sys.argv[1]).allocate(1 << 20, name="smoke")
frame = numpy.frombuffer(buf, dtype=numpy.uint8)
frame[:] = 7
assert frame.__array_interface__["data"][0] == buf.address
other = shmbroker.Client(sys.argv[1]).attach("smoke")  # a second connection
assert int(numpy.frombuffer(other, dtype=numpy.uint8).sum()) == 7 << 20
print("ok")
"""


def run(argv, env=None, cwd=None):
    print("+", " ".join(argv), flush=True)
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(argv)}\n"
                 f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result.stdout


def smoke(python, socket, env, expect_under):
    out = run([python, "-c", SMOKE, socket], env=env, cwd="/").split()
    if out[-1] != "ok" or not out[0].startswith(expect_under):
        sys.exit(f"smoke test: {out} (expected a package under {expect_under})")
    print("  imported", out[0])


def main():
    build = os.path.abspath(sys.argv[1])
    work = tempfile.mkdtemp(prefix="shmbroker-pyinstall-")
    daemon = Daemon()
    clean_env = {k: v for k, v in os.environ.items()
                 if k not in ("PYTHONPATH", "LD_PRELOAD")}
    try:
        prefix = os.path.join(work, "prefix")
        run(["cmake", "--install", build, "--prefix", prefix])
        version = sysconfig.get_python_version()
        site = os.path.join(prefix, "lib", f"python{version}", "dist-packages")
        smoke("/usr/bin/python3", daemon.socket, dict(clean_env, PYTHONPATH=site),
              site)

        venv = os.path.join(work, "venv")
        run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", venv])
        # The CMake build pip drives: fresh each run, at a fixed path in the
        # build tree so that ccache finds the previous run's objects.
        pip_build = os.path.join(build, "python-install-pip")
        shutil.rmtree(pip_build, ignore_errors=True)
        pip_env = dict(clean_env, SHMBROKER_PIP_BUILD_DIR=pip_build,
                       PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
        run([os.path.join(venv, "bin", "pip"), "install", "--no-build-isolation",
             "--no-index", os.path.join(ROOT, "python")], env=pip_env)
        smoke(os.path.join(venv, "bin", "python"), daemon.socket, clean_env, venv)
        print("python_install: ok")
    finally:
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(os.path.join(build, "python-install-pip"), ignore_errors=True)


if __name__ == "__main__":
    main()
