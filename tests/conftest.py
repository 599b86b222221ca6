from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property tests check what is generated, not how fast: a loaded 2-core CI machine
# must not fail them on Hypothesis's per-example deadline or its slow-input check.
settings.register_profile("auxot", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("auxot")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


# The slow lane: tests that run real components (llama-server and the model, the
# router as a process, npm CLIs, nginx/wrk).  `pytest -m "not slow"` is the fast
# lane: units, codecs, goldens and in-process tests.
SLOW_FILES = ("test_e2e_", "test_bench_smoke", "test_tools_loop", "test_client_servers", "test_mcp_everything", "test_mcp_filesystem")
SLOW_FIXTURES = {"router"}
NEEDS_LLAMA = ("test_e2e_", "test_bench_smoke")  # slow files that run llama-server and the model (the router fixture does)


def _components_missing() -> str | None:
    from auxot import provision

    if provision.find_llama_server(os.environ.get("AUXOT_LLAMA_SERVER")) is None:
        return "llama-server is not built here (python -m auxot install)"
    if provision.find_model(os.environ.get("AUXOT_MODEL")) is None:
        return "the model is not downloaded here (python -m auxot install)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = _components_missing()
    for item in items:
        fixtures = {name for name in getattr(item, "fixturenames", ()) if _from_here(item, name)}
        if item.path.name.startswith(SLOW_FILES) or fixtures & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)
        if missing and (item.path.name.startswith(NEEDS_LLAMA) or fixtures & SLOW_FIXTURES):
            item.add_marker(pytest.mark.skip(reason=missing))


def _from_here(item: pytest.Item, name: str) -> bool:
    """Is the fixture ``name`` that ``item`` gets this module's own (not a test
    file's fixture of the same name, such as a router on a cloud double)?"""
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.get(name) if info is not None else None
    return bool(defs) and getattr(defs[-1].func, "__module__", "") == __name__


def pytest_report_header(config: pytest.Config) -> str:
    from auxot import provision

    return (
        f"auxot: llama-server={provision.find_llama_server(os.environ.get('AUXOT_LLAMA_SERVER'))} "
        f"model={provision.find_model(os.environ.get('AUXOT_MODEL'))}"
    )


LLAMA_KEY = "llama-" + secrets.token_urlsafe(16)


@pytest.fixture(scope="session")
def router(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One `python -m auxot serve` with the real llama-server and SmolLM2, shared
    by the end-to-end tests; on teardown it must exit 0 and leave no child."""
    from tests.support.router_process import pid_alive, start_router

    # SmolLM2 at temperature 1 can ramble until its context is full when a request
    # sets no limit (several documented examples don't); cap it so tests stay quick.
    directory = tmp_path_factory.mktemp("router")
    config = directory / "auxot.toml"
    # The operator's own llama-server key (else a new secret per start, which only the
    # router knows): the tests that look at llama-server directly need it.
    config.write_text('[[providers]]\nkind = "llamacpp"\nname = "local"\ndefault_max_tokens = 200\n'
                      f'api_key = "{LLAMA_KEY}"\n')
    proc = start_router(directory / "data", "--config", str(config))
    yield proc
    pids = proc.llama_pids()
    assert proc.stop() == 0
    assert pids and not any(pid_alive(p) for p in pids), "llama-server outlived the router"
