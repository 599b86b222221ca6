"""Fields and paths other servers' clients and test suites expect, against
`auxot serve` on the real llama-server, with the real SDKs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anthropic
import openai

from router_process import RouterProcess


def test_the_root_paths_other_servers_use(router: RouterProcess) -> None:
    """llama-server, vLLM and SGLang serve /chat/completions, /models, /responses and
    /v1/messages at the root: SDKs pointed at the bare address work."""
    client = openai.OpenAI(base_url=router.base_url, api_key=router.key, max_retries=0, timeout=60)
    answer = client.chat.completions.create(model="auto", max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content
    assert "auto" in [m.id for m in client.models.list().data]
    assert client.responses.create(model="auto", input="Hi", max_output_tokens=5).output
    claude = anthropic.Anthropic(base_url=router.base_url, api_key=router.key, max_retries=0, timeout=60)
    message = claude.messages.create(model="auto", max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    assert message.content and message.content[0].type == "text"
    assert claude.messages.count_tokens(model="auto", messages=[{"role": "user", "content": "Hi"}]).input_tokens > 0
    client.close()
    claude.close()


def auxot_cli(router: RouterProcess, *args: str) -> str:
    data_dir = router.process.args[router.process.args.index("--data-dir") + 1]
    done = subprocess.run([sys.executable, "-m", "auxot", "keys", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, check=True)
    return done.stdout


def test_models_lists_only_what_the_key_may_use_and_keys_list_cuts_nothing(router: RouterProcess, tmp_path: Path) -> None:
    name = "a key with a long and descriptive name, as operators write them"
    key = auxot_cli(router, "create", "--name", name, "--models", "nobody-serves-this").strip().splitlines()[-1]
    limited = openai.OpenAI(base_url=router.base_url + "/v1", api_key=key, max_retries=0, timeout=30)
    assert [m.id for m in limited.models.list().data] == ["auto"]  # SmolLM2 is not the key's to use
    everyone = openai.OpenAI(base_url=router.base_url + "/v1", api_key=router.key, max_retries=0, timeout=30)
    assert [m.id for m in everyone.models.list().data] == ["auto", "SmolLM2-135M-Instruct"]
    assert name in auxot_cli(router, "list")
    limited.close()
    everyone.close()


def test_system_fingerprint_is_llama_server_s_build(router: RouterProcess) -> None:
    client = openai.OpenAI(base_url=router.base_url + "/v1", api_key=router.key, max_retries=0, timeout=60)
    answer = client.chat.completions.create(model="auto", max_tokens=3, messages=[{"role": "user", "content": "Hi"}])
    assert answer.system_fingerprint and answer.system_fingerprint.startswith("b11434")
    chunks = list(client.chat.completions.create(model="auto", max_tokens=3, stream=True,
                                                 messages=[{"role": "user", "content": "Hi"}]))
    assert chunks and {c.system_fingerprint for c in chunks} == {answer.system_fingerprint}
    client.close()
