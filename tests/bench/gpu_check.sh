#!/usr/bin/env bash
# The GPU tier, verified on a machine with an NVIDIA GPU (issue 22), in one run:
#   bash tests/bench/gpu_check.sh            (from a checkout; needs cmake, a C++ compiler and nvcc)
# 1. builds the CUDA llama-server (python -m auxot install) and shows it was chosen;
# 2. starts `serve` on the GPU and checks /health: the CUDA build runs, every layer offloaded;
# 3. tokens/s directly and through auxot (python -m tests.bench tokens);
# 4. a remote `worker` on the same machine's loopback, answering through the router.
# Everything is printed; the exit status is 0 only if every check held.
set -euo pipefail
cd "$(dirname "$0")/../.."
nvidia-smi --query-gpu=name,memory.total,compute_cap --format=csv,noheader
command -v nvcc || ls /usr/local/cuda/bin/nvcc
pip install -q -e '.[test]'
time python -m auxot install 2>&1 | tail -5
DATA=$(mktemp -d)
python -m auxot serve --port 18420 --data-dir "$DATA" > "$DATA/serve.log" 2>&1 &
SERVE=$!
trap 'kill $SERVE ${WORKER:-} 2>/dev/null || true' EXIT
for _ in $(seq 120); do grep -q "ready in" "$DATA/serve.log" && break; sleep 1; done
KEY=$(grep -oE '(user|team)\.[A-Za-z0-9_-]{43}' "$DATA/serve.log" | head -1)
python - "$KEY" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request("http://127.0.0.1:18420/health", headers={"Authorization": f"Bearer {sys.argv[1]}"})
health = json.loads(urllib.request.urlopen(req, timeout=10).read())
(local,) = [p for p in health["providers"] if p["kind"] == "llamacpp"]
print(json.dumps({k: local[k] for k in ("binary", "layers_offloaded", "accelerator")}, indent=2))
done, total = local["layers_offloaded"].split("/") if "/" in local["layers_offloaded"] else ("0", "?")
assert local["binary"]["build"] == "cuda", "the CUDA build does not run"
assert done == total, f"only {local['layers_offloaded']} layers offloaded"
print("OK: the CUDA build runs with every layer on the GPU")
PY
python -m tests.bench tokens --runs 5 2>&1 | tail -15
WKEY=$(python -m auxot keys --data-dir "$DATA" create --worker --name gpu-check | tail -1)
AUXOT_WORKER_KEY=$WKEY python -m auxot worker --router-url ws://127.0.0.1:18420/ws --name gpu-check \
  --data-dir "$DATA/worker" > "$DATA/worker.log" 2>&1 &
WORKER=$!
for _ in $(seq 120); do grep -q "registered with" "$DATA/worker.log" && break; sleep 1; done
python - "$KEY" <<'PY'
import json, sys, urllib.request
body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 16}).encode()
for _ in range(4):  # both providers (local and the worker) take turns
    req = urllib.request.Request("http://127.0.0.1:18420/v1/chat/completions", data=body,
                                 headers={"Authorization": f"Bearer {sys.argv[1]}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        print(resp.headers.get("x-auxot-provider"), json.loads(resp.read())["usage"])
req = urllib.request.Request("http://127.0.0.1:18420/health", headers={"Authorization": f"Bearer {sys.argv[1]}"})
workers = [p for p in json.loads(urllib.request.urlopen(req, timeout=10).read())["providers"] if p["kind"] == "worker"]
assert workers and workers[0]["state"] == "ready", workers
print("OK: a worker on loopback serves through the router:", workers[0]["name"], workers[0].get("accelerator"))
PY
