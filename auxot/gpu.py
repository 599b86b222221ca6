"""Is there a GPU for llama-server?  Asked once, at ``serve``.

``nvidia-smi`` is the one portable witness of a working NVIDIA driver: if it
lists devices, llama-server gets ``--n-gpu-layers`` (all layers unless the
operator chose a number); otherwise it runs on the CPU.  The answer is shown
in ``/health``.  A llama-server built without CUDA ignores the flag with a
warning, so offloading is never worse than not.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

ALL_LAYERS = 999  # llama-server caps it at the model's layer count
QUERY = ["--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"]


@dataclass(frozen=True)
class Device:
    name: str
    memory_mib: int | None
    driver: str


@dataclass(frozen=True)
class Accelerator:
    kind: str  # "cuda" | "cpu"
    devices: tuple[Device, ...] = ()
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind, "note": self.note or None,
            "devices": [{"name": d.name, "memory_mib": d.memory_mib, "driver": d.driver} for d in self.devices],
        }


CPU = Accelerator("cpu", note="no GPU found (nvidia-smi absent or listed none)")


def parse_nvidia_smi(output: str) -> tuple[Device, ...]:
    """``name, memory.total (MiB), driver_version`` per line."""
    devices = []
    for line in output.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 3 or not fields[0]:
            continue
        memory = int(fields[1]) if fields[1].isdigit() else None
        devices.append(Device(fields[0], memory, fields[2]))
    return tuple(devices)


def detect(timeout: float = 5.0) -> Accelerator:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return CPU
    try:
        done = subprocess.run([exe, *QUERY], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Accelerator("cpu", note=f"nvidia-smi failed: {exc}")
    devices = parse_nvidia_smi(done.stdout) if done.returncode == 0 else ()
    if not devices:
        detail = (done.stderr or done.stdout).strip().splitlines()
        return Accelerator("cpu", note=f"nvidia-smi found no usable GPU: {detail[-1] if detail else done.returncode}")
    return Accelerator("cuda", devices)


GPU_LAYER_FLAGS = ("-ngl", "--n-gpu-layers", "--gpu-layers")


def gpu_layer_args(accelerator: Accelerator, configured: int | None, extra_args: tuple[str, ...]) -> list[str]:
    """The ``--n-gpu-layers`` llama-server gets: none if the operator passed it
    in ``extra_args``; the configured number; else all layers on a GPU, none on a CPU."""
    if any(a in GPU_LAYER_FLAGS or a.startswith(tuple(f + "=" for f in GPU_LAYER_FLAGS)) for a in extra_args):
        return []
    if configured is not None:
        return ["--n-gpu-layers", str(configured)]
    return ["--n-gpu-layers", str(ALL_LAYERS if accelerator.kind == "cuda" else 0)]
