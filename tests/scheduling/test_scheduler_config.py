"""The scheduler's TOML: placement (tier, order), lifecycle (lazy, idle_ttl),
GPU layers and the [scheduler] table, with errors that name the field; and GPU
detection's parsing of nvidia-smi and the flags llama-server gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from auxot import gpu
from auxot.config import CloudConfig, ConfigError, LlamaCppConfig, SchedulerConfig
from auxot.config_file import load


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "auxot.toml"
    path.write_text(text)
    return str(path)


def test_placement_lifecycle_and_scheduler_table(tmp_path: Path) -> None:
    config = load(write(tmp_path, """
[scheduler]
queue_size = 8
queue_timeout = 5
max_attempts = 2

[[providers]]
kind = "llamacpp"
name = "big"
order = 2
lazy = true
idle_ttl = 300
gpu_layers = 20

[[providers]]
kind = "openai-compatible"
name = "vllm"
tier = "gpu"
base_url = "http://127.0.0.1:9/v1"
models = ["qwen"]
"""))
    big, vllm = config.providers
    assert isinstance(big, LlamaCppConfig) and (big.tier, big.order, big.lazy, big.idle_ttl, big.gpu_layers) == ("gpu", 2, True, 300.0, 20)
    assert isinstance(vllm, CloudConfig) and (vllm.tier, vllm.order) == ("gpu", 0)
    assert config.scheduler == SchedulerConfig(queue_size=8, queue_timeout=5.0, max_attempts=2)
    assert load(None).scheduler == SchedulerConfig() and load(None).providers[0].gpu_layers is None  # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "message"), [
    ('[[providers]]\nkind = "llamacpp"\ntier = "tpu"\n', "providers[0].tier must be one of gpu, cli, cloud; got 'tpu'"),
    ('[[providers]]\nkind = "llamacpp"\ngpu_layers = -1\n', 'providers[0].gpu_layers must be "auto" or a whole number'),
    ('[[providers]]\nkind = "llamacpp"\nlazy = "yes"\n', "providers[0].lazy must be bool"),
    ("[scheduler]\nqueue_size = 0\n", "scheduler.queue_size must be positive"),
    ('[scheduler]\nqueue_timeout = "soon"\n', "scheduler.queue_timeout must be float"),
    ("scheduler = 3\n", "[scheduler] must be a table"),
    ('[tools]\nclient_servers = ["mcp.example.com/*"]\n', "tools.client_servers: each entry is a URL pattern starting http"),
    ('[tools]\nclient_servers_private = ["localhost"]\n', "tools.client_servers_private: 'localhost' is not an address"),
    ('[tools]\nclient_servers = "https://mcp.example.com/*"\n', "tools.client_servers must be list"),
])
def test_bad_values_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        load(write(tmp_path, text))


def test_nvidia_smi_output_is_parsed() -> None:
    out = "NVIDIA H100 80GB HBM3, 81559, 550.54.15\nNVIDIA H100 80GB HBM3, 81559, 550.54.15\n\n"
    devices = gpu.parse_nvidia_smi(out)
    assert devices == (gpu.Device("NVIDIA H100 80GB HBM3", 81559, "550.54.15"),) * 2
    assert gpu.parse_nvidia_smi("No devices were found\n") == ()


def test_gpu_layers_follow_the_accelerator_unless_the_operator_chose() -> None:
    cuda = gpu.Accelerator("cuda", (gpu.Device("H100", 81559, "550"),))
    assert gpu.gpu_layer_args(cuda, None, ()) == ["--n-gpu-layers", "999"]
    assert gpu.gpu_layer_args(gpu.CPU, None, ()) == ["--n-gpu-layers", "0"]
    assert gpu.gpu_layer_args(cuda, 12, ()) == ["--n-gpu-layers", "12"]
    assert gpu.gpu_layer_args(cuda, None, ("-ngl", "4")) == []
    assert gpu.gpu_layer_args(cuda, None, ("--n-gpu-layers=4",)) == []


def test_detect_on_this_machine_agrees_with_nvidia_smi() -> None:
    import shutil
    import subprocess

    found = gpu.detect()
    exe = shutil.which("nvidia-smi")
    listed: tuple[gpu.Device, ...] = ()
    if exe is not None:  # asked here by the test itself, independently of detect()
        done = subprocess.run([exe, *gpu.QUERY], capture_output=True, text=True, timeout=10, check=False)
        listed = gpu.parse_nvidia_smi(done.stdout) if done.returncode == 0 else ()
    assert found.kind == ("cuda" if listed else "cpu") and found.devices == listed
    assert found.as_dict()["kind"] == found.kind


@pytest.mark.parametrize(("text", "message"), [
    ('[[providers]]\nkind = "llamacpp"\nmodle = "/m.gguf"\n', "providers[0]: unknown key 'modle'; did you mean 'model'?"),
    ("[schedular]\nqueue_size = 3\n", "unknown section 'schedular'; did you mean 'scheduler'?"),
    ("[workers]\nheartbeat_intervall = 3\n", "[workers]: unknown key 'heartbeat_intervall'; did you mean 'heartbeat_interval'?"),
    ('[[providers]]\nkind = "openai"\nmodels = ["m"]\nparallel = 2\n', "providers[0]: unknown key 'parallel'"),
    ("[server]\nprot = 1\n", "[server]: unknown key 'prot'; did you mean 'port'?"),
])
def test_unknown_keys_and_sections_are_refused_naming_the_closest(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, text))
    assert message in str(caught.value) and str(caught.value).startswith(str(tmp_path))


def test_every_documented_key_is_known(tmp_path: Path) -> None:
    """The keys the config module's own documentation shows are all accepted."""
    load(write(tmp_path, """
[server]
host = "127.0.0.1"
port = 8420
max_body_bytes = 1000
graceful_timeout = 1.0
send_timeout = 5.0
body_timeout = 5.0
embedded_default = true
data_dir = "/tmp/x"
[workers]
heartbeat_interval = 5.0
heartbeat_timeout = 15.0
window = 64
linger = 300.0
[scheduler]
queue_size = 1
queue_timeout = 1.0
max_attempts = 1
failure_backoff = 1.0
failure_backoff_cap = 2.0
[[providers]]
kind = "llamacpp"
name = "local"
model = "/m.gguf"
binary = "/b"
alias = "a"
aliases = ["b"]
parallel = 1
ctx_size = 1024
extra_args = []
default_max_tokens = 5
tier = "gpu"
order = 0
lazy = false
idle_ttl = 0
gpu_layers = "auto"
mmproj = "/p.gguf"
threads = 1
api_key = "k"
[[providers]]
kind = "anthropic"
name = "c"
models = ["m"]
api_key = "k"
images = true
context = 200000
anthropic_version = "2023-06-01"
"""), port=None)


def test_alias_defaults_to_the_configured_model_file_s_name(tmp_path: Path) -> None:
    config = load(write(tmp_path, '[[providers]]\nkind = "llamacpp"\nmodel = "/models/qwen2.5-7b-instruct-q4_k_m.gguf"\n'))
    assert config.providers[0].alias == "qwen2.5-7b-instruct-q4_k_m"  # type: ignore[union-attr]
