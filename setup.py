# SPDX-License-Identifier: Apache-2.0
# Builds the Python package shmchan with CMake (the target shmchan_python of python/CMakeLists.txt)
# and packages what it puts in <build>/python/shmchan. pyproject.toml holds the metadata.
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self):
        super().__init__("shmchan._shmchan", sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build_dir = Path(self.build_temp).resolve() / "cmake"
        build_dir.mkdir(parents=True, exist_ok=True)
        jobs = os.environ.get("SHMCHAN_BUILD_JOBS", "2")
        configure = [
            "cmake", "-S", str(ROOT), "-B", str(build_dir),
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DPython_EXECUTABLE={sys.executable}",
            "-DSHMCHAN_BUILD_TESTS=OFF", "-DSHMCHAN_BUILD_TOOLS=OFF", "-DSHMCHAN_BUILD_EXAMPLES=OFF",
            "-DSHMCHAN_BUILD_BENCH=OFF", "-DSHMCHAN_BUILD_SHARED=OFF", "-DSHMCHAN_INSTALL=OFF",
            "-DSHMCHAN_BUILD_PYTHON=ON",
        ]
        if shutil.which("ccache"):
            configure.append("-DCMAKE_CXX_COMPILER_LAUNCHER=ccache")
        subprocess.run(configure, check=True)
        subprocess.run(["cmake", "--build", str(build_dir), "-j", jobs, "--target", "shmchan_python"], check=True)
        built = build_dir / "python" / "shmchan"
        target = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        target.mkdir(parents=True, exist_ok=True)
        extension = next(built.glob("_shmchan*.so"), None)
        if extension is None:
            raise RuntimeError(f"CMake did not build the extension into {built} (is pybind11-dev installed?)")
        shutil.copy2(extension, Path(self.get_ext_fullpath(ext.name)))
        for name in ("__init__.pyi", "py.typed"):
            shutil.copy2(built / name, target / name)


setup(
    packages=["shmchan"],
    package_dir={"shmchan": "python/shmchan"},
    ext_modules=[CMakeExtension()],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)
