from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


def pytest_report_header(config: pytest.Config) -> str:
    from auxot import provision

    return f"auxot: llama-server={provision.find_llama_server(os.environ.get('AUXOT_LLAMA_SERVER'))} model={provision.find_model(os.environ.get('AUXOT_MODEL'))}"
