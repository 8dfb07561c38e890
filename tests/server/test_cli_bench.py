"""`ragblend bench load`: the options reach bench/load.py from a checkout, and outside one the command
says that it needs one instead of failing with a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RAGBLEND = Path(sys.executable).with_name("ragblend")


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_bench_load_passes_its_options_to_the_load_test() -> None:
    done = _run([str(RAGBLEND), "bench", "load", "--help"], ROOT)
    assert done.returncode == 0, done.stderr
    # argparse's help of bench/load.py, not typer's: the options were passed through
    assert "--start-rate" in done.stdout and "--slo-ttft-ms" in done.stdout


def test_bench_load_runs_as_a_module_too() -> None:
    done = _run([sys.executable, "-m", "server.cli", "bench", "load", "--help"], ROOT)
    assert done.returncode == 0, done.stderr
    assert "--max-levels" in done.stdout


def test_bench_load_outside_a_checkout_says_it_needs_one(tmp_path: Path) -> None:
    done = _run([str(RAGBLEND), "bench", "load", "--help"], tmp_path)
    assert done.returncode == 2
    assert "source checkout" in done.stderr and "Traceback" not in done.stderr
