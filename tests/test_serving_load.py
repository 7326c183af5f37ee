"""Serving under load (issue 9, item 5): an exported QuickNAT SavedModel's segment_volume
called from 8 threads for 200 calls returns bit-identical results, and resident memory stays
flat. Runs benchmarks/serving_load.py in a fresh process (so RSS is not shared with other
tests) at a small size; the realistic size is the benchmark's default (benchmarks/README.md)."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_eight_threads_200_calls_identical_and_flat_rss():
    cmd = [sys.executable, os.path.join(REPO, "benchmarks", "serving_load.py"),
           "--shape", "32,32,24", "--filters", "8", "--depth", "2", "--threads", "8",
           "--calls", "200", "--warmup", "16", "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert "RESULT " in r.stdout, r.stderr[-3000:]
    res = json.loads(r.stdout.split("RESULT ", 1)[1])
    print(f"\n8 threads x 200 calls, 32x32x24: RSS after warm-up {res['rss_warm'] / 1e6:.1f} MB, "
          f"after {res['rss_after'] / 1e6:.1f} MB, growth {res['growth'] / 1e6:+.1f} MB "
          f"({res['growth_pct']:+.2f} %), peak {res['rss_peak'] / 1e6:.1f} MB")
    assert res["errors"] == []
    assert res["calls"] == 200
    assert res["mismatches"] == 0
    assert res["labels_in_reference"] >= 2  # the model does not output one constant label
    assert res["growth"] < 100e6 and res["growth_pct"] < 20.0
    assert r.returncode == 0
