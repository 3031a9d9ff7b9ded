"""Every example runs end to end with --quick."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(name, *args, cwd=None):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), "--quick", *args],
                          cwd=cwd or ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_custom_graph():
    out = _run("custom_graph.py")
    assert "learned wiring: 500 edges" in out


def test_randwire_vs_dnw():
    out = _run("randwire_vs_dnw.py")
    lines = [line.split() for line in out.splitlines() if line.startswith(("ws ", "dnw "))]
    assert [line[0] for line in lines] == ["ws", "dnw"]
    assert lines[0][2] == lines[1][2]  # equal active edges


def test_analyse_wiring(tmp_path):
    png = tmp_path / "deg.png"
    out = _run("analyse_wiring.py", "--out", str(png))
    assert "learned" in out and "random" in out and "depth" in out
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_mobilenet_chain():
    out = _run("mobilenet_chain.py")
    lines = [line.split() for line in out.splitlines() if line.startswith(("dnw ", "random "))]
    assert [line[0] for line in lines] == ["dnw", "random"]
    assert lines[0][2] == lines[1][2] == "158942"  # the x0.225 budget, equal for both
    assert all(int(line[3]) <= 158942 for line in lines)  # the compacted models keep the effective edges
