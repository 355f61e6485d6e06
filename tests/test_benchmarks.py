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


def run_benchmark(name, *flags):
    command = [sys.executable, os.path.join(ROOT, 'benchmarks', name), '--threads', '1', *flags]
    return subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout.strip().splitlines()


def test_mesh_accuracy_benchmark_reproduces_the_acceptance_numbers():
    # The shipped model's seed-0 mesh, from the cameras of tests/test_shapes.py: it passes the same thresholds.
    header, row = run_benchmark('mesh_accuracy.py', '--seeds', '0')[-2:]
    assert header.startswith('| seed | vertices |')
    seed, vertices, components, ious, depth_errors, outside, radius = (cell.strip() for cell in row.strip('|').split('|'))
    assert seed == '0' and int(vertices.replace(',', '')) > 1000 and components == '1'
    assert len(ious.split(' / ')) == 4 and all(float(iou) >= 0.85 for iou in ious.split(' / '))
    assert all(float(error) <= 2 for error in depth_errors.rstrip(' %').split(' / '))
    assert float(outside.rstrip(' %')) <= 5 and 0 < float(radius) < 0.5


def test_inversion_quality_benchmark_summarises_its_cars():
    lines = run_benchmark('inversion_quality.py', '--num_cars', '2', '--steps', '4', '--pose_starts', '1')
    cars = [line.split('|') for line in lines if line.strip()[:1].isdigit() and line.count('|') == 4]
    assert [int(car[0]) for car in cars] == [0, 1]
    camera_errors, psnrs = [float(car[1]) for car in cars], [float(car[2]) for car in cars]
    assert all(0 <= error < 90 for error in camera_errors) and all(psnr > 10 for psnr in psnrs)
    summary = lines[-1].strip('|').split('|')
    mean_error = float(summary[0].split('°')[0])
    assert abs(mean_error - sum(camera_errors) / 2) <= 0.06  # printed to 0.1 and 0.01 degrees
    assert summary[1].strip().endswith('of 2') and summary[4].strip().endswith('of 2')
