"""benchmarks/render.py runs end to end and prints a well-formed table row."""
import os
import subprocess
import sys

from conftest import ROOT


def test_render_benchmark_table():
    command = [sys.executable, os.path.join(ROOT, 'benchmarks', 'render.py'), '--sizes', '16',
               '--repeats', '2', '--threads', '1']
    output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    header, row = output.strip().splitlines()[-2:]
    assert header.split()[:5] == ['size', 'render', 's', 'dense', 's']
    size, render_s, dense_s, ratio, pairs, peak_mb, growth_mb, skipped = row.split()
    assert size == '16'
    render_s, dense_s, ratio = float(render_s), float(dense_s), float(ratio)
    rounding = ratio * (0.005 / render_s + 0.005 / dense_s) + 0.005  # the table prints 2 decimals
    assert abs(ratio - render_s / dense_s) <= rounding
    low, high = (float(value) for value in pairs.split('-'))
    assert 0 < low <= high
    assert float(peak_mb) > 100 and float(growth_mb) >= 0
    assert 0 < float(skipped.rstrip('%')) < 100
