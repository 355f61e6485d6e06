"""benchmarks/render.py runs end to end and prints a well-formed table row."""
import os
import subprocess
import sys

from helpers import ROOT


def test_render_benchmark_table():
    command = [sys.executable, os.path.join(ROOT, 'benchmarks', 'render.py'), '--sizes', '32',
               '--repeats', '2', '--threads', '1']
    output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    header, row = output.strip().splitlines()[-2:]
    assert header.split()[:5] == ['size', 'render', 's', 'dense', 's']
    size, render_s, dense_s, ratio, pairs, chunked_s, chunked_ratio, peak_mb, growth_mb, skipped = row.split()
    assert size == '32'
    render_s = float(render_s)
    for reference_s, reference_ratio in ((dense_s, ratio), (chunked_s, chunked_ratio)):
        reference_s, reference_ratio = float(reference_s), float(reference_ratio)
        rounding = reference_ratio * (0.005 / render_s + 0.005 / reference_s) + 0.005  # 2 decimals printed
        assert abs(reference_ratio - render_s / reference_s) <= rounding
    low, high = (float(value) for value in pairs.split('-'))
    assert 0 < low <= high
    assert float(peak_mb) > 100 and float(growth_mb) >= 0
    assert 0 < float(skipped.rstrip('%')) < 100
