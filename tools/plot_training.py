"""Plot a run's training curves (losses from <run>/stats.jsonl) to a PNG.

    python -m tools.plot_training --run_dir runs/demo --output docs/training_curve.png
"""
import utils.openmp  # noqa: F401, I001  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use('Agg')  # files only, no display
import matplotlib.pyplot as plt

from utils import cli
from utils.files import atomic_path

STATS_FILE = 'stats.jsonl'
PANELS = (  # (title, stats keys drawn in that panel)
    ('GAN losses', ('loss/D_real', 'loss/D_fake', 'loss/G')),
    ('pose losses (weighted)', ('loss/D_pos', 'loss/D_real_pos')),
    ('R1 penalty (weighted)', ('loss/D_r1',)),
    ('view-consistency penalty (weighted)', ('loss/G_view',)),
)


def read_stats(run_dir):
    """Records of <run_dir>/stats.jsonl in step order; a clear error when it is missing or empty.

    A run resumed from an earlier checkpoint logs some steps again; the later record of a step
    (the history that continued) replaces the earlier one.
    """
    path = os.path.join(run_dir, STATS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"'{path}' not found; pass the --output_dir of a training run")
    with open(path) as handle:
        lines = [(number, line) for number, line in enumerate(handle, 1) if line.strip()]
    records = []
    for number, line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if number == lines[-1][0] and not line.endswith('\n'):  # being written, or the run stopped mid-line
                print(f"note: skipped the unfinished last line of '{path}'")
                continue
            raise ValueError(f"line {number} of '{path}' is not a JSON record ({error}); "
                             f"delete that line and plot again") from error
        if not isinstance(record, dict) or not isinstance(record.get('step'), int):
            raise ValueError(f"line {number} of '{path}' is not a training record (no integer 'step'); "
                             f"delete that line and plot again")
        records.append(record)
    if not records:
        raise ValueError(f"'{path}' has no records yet; train for at least --log_interval steps")
    by_step = {record['step']: record for record in records}
    return [by_step[step] for step in sorted(by_step)]


def plot(records, output):
    """Draw one panel per entry of PANELS that has data (e.g. no pose panel for a run without
    pose losses) against the step and save to `output` (atomic). Returns the panel titles."""
    panels = [(title, keys) for title, keys in PANELS if any(key in r for r in records for key in keys)]
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for axis, (title, keys) in zip(axes[0], panels):
        for key in keys:
            points = [(r['step'], r[key]) for r in records if key in r]
            if points:
                steps, values = zip(*points)
                axis.plot(steps, values, label=key.split('/', 1)[1], linewidth=1)
        axis.set_title(title)
        axis.set_xlabel('iteration')
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_path(output) as tmp_path:
        figure.savefig(tmp_path, dpi=110, format='png')
    plt.close(figure)
    return [title for title, _ in panels]


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--run_dir', required=True, help='training output folder holding stats.jsonl')
    parser.add_argument('--output', default='training_curve.png', help='PNG to write')
    args = parser.parse_args(argv)
    return cli.run_script(run, args)


def run(args):
    records = read_stats(args.run_dir)
    plot(records, args.output)
    print(f'wrote {args.output} ({len(records)} records, steps {records[0]["step"]}-{records[-1]["step"]})')


if __name__ == '__main__':
    sys.exit(main())
