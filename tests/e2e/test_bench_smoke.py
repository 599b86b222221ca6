"""The benchmark harness runs end to end (tiny sizes, seconds): nginx upstream,
the ceiling app and auxot as real processes, a real load generator.  It checks
that every path answers the fixture correctly and that the tables and JSON come
out; it measures nothing (figures come from `python -m tests.bench`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench import tools
from tests.support import ROOT


def test_bench_harness_runs_every_loopback_scenario(tmp_path: Path) -> None:
    if tools.find("nginx", install=False) is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light; .ci/run installs it)")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.bench", "nonstream", "relay", "streams", "pace", "--no-install", "--duration", "1",
         "--concurrency", "1", "--chunks", "300", "--relay-runs", "1", "--streams", "20", "--hold", "1",
         "--pace-seconds", "1", "--pace-rate", "20", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    assert "load: " in text and "upstream: nginx" in text  # it says which tools it used
    for heading in ("1. non-streaming", "2. streaming relay", "3. 20 streams open", "5. one stream at 20 chunks/s", "targets (#11)"):
        assert heading in text
    got = json.loads(out.read_text())
    point = got["nonstream"][0]
    assert point["concurrency"] == 1
    for side in ("ceiling", "floor", "direct", "auxot"):
        assert point[side]["requests"] > 0 and point[side]["errors"] == 0
    assert set(got["relay"]) == {"direct (nginx)", "auxot openai→openai", "auxot openai→anthropic"}
    assert all(fig["errors"] == 0 and fig["chunks_per_s"] > 0 for fig in got["relay"].values())
    for side in ("ceiling", "auxot"):
        assert got["streams"][side]["streams"] == 20 and got["streams"][side]["errors"] == 0
    for side in ("ceiling", "auxot"):  # the paced stream: every chunk arrived (its CPU is too small to check here)
        assert got["pace"][side]["chunks"] >= 20 and got["pace"][side]["errors"] == 0
    assert got["pace"]["bare trio wake"] > 0


def test_hostile_bench_runs_every_scenario_and_meets_its_bars(tmp_path: Path) -> None:
    """Tiny sizes; the bench's own verdicts (exit status 0) are the bars of the
    hardening issue: no answer >= 500 and no hang under fuzzing, image requests
    all 400 while text requests all succeed, a stalled reader's slot free within
    send_timeout + 2 s, a ledger row for every answer under poisoned traffic."""
    out = tmp_path / "hostile.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.bench", "hostile", "--fuzz", "60", "--seconds", "2", "--send-timeout", "2",
         "--requests", "60", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got["fuzz"]["requests"] == 60 * 5 and got["fuzz"]["server_errors"] == 0 and got["fuzz"]["hangs"] == 0
    assert got["image"]["with image requests"]["image_requests"] > 0
    assert got["stall"]["ledger_outcome"] == ["stalled"]
    assert got["ledger"]["answers"] == got["ledger"]["ledger_rows"] == 60


def test_tools_bench_runs_and_reports_its_figures() -> None:
    """Tiny sizes: every request of each kind must come back "done" (the bench
    asserts it), and the derived figures must be printed."""
    proc = subprocess.run([sys.executable, "-m", "tests.bench", "tools", "--requests", "3", "--rounds", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "added per tool round" in proc.stdout and "added per extra parallel call" in proc.stdout
    assert all(f"{kind:<6} p50" in proc.stdout for kind in ("plain", "one", "four"))


def test_fanout_bench_runs_and_auxot_holds_a_small_pace() -> None:
    """Ten streams at 20 tokens/s for a second: every token through auxot, the pace held (the bench decides)."""
    proc = subprocess.run([sys.executable, "-m", "tests.bench", "fanout", "--fanout-streams", "10", "--fanout-seconds", "1",
                           "--no-install"], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    auxot = next(line for line in proc.stdout.splitlines() if line.startswith("  auxot "))  # its row in the table
    assert "held the pace" in auxot and " 0 " in auxot, proc.stdout[-3000:]  # no errors
    assert "fanout: auxot held up to 10 streams" in proc.stdout
