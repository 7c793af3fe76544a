"""`mmdemo bench` runs every path of a scenario in one process and writes figures that add up (timings themselves
are the benchmark's business, not the tests')."""

import json
import subprocess
import sys

from conftest import ROOT


def test_bench_runs_every_path_and_writes_its_figures(tmp_path):
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "mmdemo", "bench", "--scenarios", "vqa,sounds", "--requests", "16"]
    command += ["--clients", "1,4", "--json", str(out), "--plot", str(tmp_path / "bench.png")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    vqa = {(r["path"], r["clients"]): r for r in rows if r["scenario"] == "vqa"}
    paths = {("naive", 1), ("list", 1), *((path, c) for path in ("in-process", "rest", "http") for c in (1, 4))}
    assert set(vqa) == paths
    assert vqa[("list", 1)]["n"] == vqa[("in-process", 4)]["n"] == 16 and vqa[("naive", 1)]["n"] == 8
    for r in rows:
        assert r["errors"] == 0, r["first_error"]
        assert r["throughput"] > 0 and r["peak_mb"] > 0
    sounds = {r["path"] for r in rows if r["scenario"] == "sounds"}
    assert sounds == {"naive", "list", "in-process", "rest", "http"}
    assert "vqa" in done.stdout and "×" in done.stdout  # the table, with ratios to naive
    assert (tmp_path / "bench.png").stat().st_size > 10_000
