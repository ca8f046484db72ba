"""Builds shmbroker._native with the project's CMake (python/CMakeLists.txt)
and puts it, with libshmbroker.so, in the package. The CMake build lives in
$SHMBROKER_PIP_BUILD_DIR (default: python/build/cmake); extra configure
arguments come from $SHMBROKER_CMAKE_ARGS."""

import glob
import os
import shlex
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        work = os.environ.get("SHMBROKER_PIP_BUILD_DIR") or os.path.join(HERE, "build")
        build_dir = os.path.join(os.path.abspath(work), "cmake")
        stage = os.path.join(os.path.abspath(work), "stage")
        configure = [
            "cmake", "-S", ROOT, "-B", build_dir,
            "-DCMAKE_BUILD_TYPE=Release",
            "-DSHMBROKER_BUILD_TESTS=OFF", "-DSHMBROKER_BUILD_BENCH=OFF",
            f"-DPython3_EXECUTABLE={sys.executable}",
            "-DSHMBROKER_PYTHON_BUNDLE_LIB=ON",
            f"-DCMAKE_INSTALL_PREFIX={stage}",
            "-DSHMBROKER_PYTHON_INSTALL_DIR=.",
        ]
        if shutil.which("ninja"):
            configure += ["-G", "Ninja"]
        configure += shlex.split(os.environ.get("SHMBROKER_CMAKE_ARGS", ""))
        subprocess.check_call(configure)
        subprocess.check_call(["cmake", "--build", build_dir, "--target",
                               "shmbroker_python", "-j",
                               os.environ.get("SHMBROKER_JOBS", "2")])
        shutil.rmtree(stage, ignore_errors=True)
        subprocess.check_call(["cmake", "--install", build_dir,
                               "--component", "python"])
        dest = os.path.dirname(os.path.abspath(self.get_ext_fullpath(ext.name)))
        os.makedirs(dest, exist_ok=True)
        built = glob.glob(os.path.join(stage, "shmbroker", "_native*.so")) + \
            glob.glob(os.path.join(stage, "shmbroker", "libshmbroker.so*"))
        if len(built) != 2:
            raise RuntimeError(f"expected _native and libshmbroker in {stage}, got {built}")
        for path in built:
            shutil.copy2(path, dest)


setup(
    packages=["shmbroker"],
    package_data={"shmbroker": ["*.pyi", "py.typed"]},
    ext_modules=[Extension("shmbroker._native", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)
