"""tools.plot_training: reads stats.jsonl, writes a PNG, fails clearly without records or on damaged ones."""
import json

import pytest
from PIL import Image

from tools import plot_training


def test_plot_writes_a_png(tmp_path):
    records = [{'step': s, 'loss/D_real': 0.5, 'loss/D_fake': 0.4, 'loss/G': 1.0 + s / 100,
                'loss/D_pos': 0.3, 'loss/D_real_pos': 0.2, 'loss/D_r1': 0.01} for s in (50, 100, 150)]
    (tmp_path / 'stats.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
    output = tmp_path / 'curve.png'
    plot_training.main(['--run_dir', str(tmp_path), '--output', str(output)])
    width, height = Image.open(output).size
    assert width > 2 * height > 0


def test_missing_or_empty_stats_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='pass the --output_dir of a training run'):
        plot_training.read_stats(tmp_path)
    (tmp_path / 'stats.jsonl').write_text('')
    with pytest.raises(ValueError, match='no records yet'):
        plot_training.read_stats(tmp_path)


def test_resumed_steps_replace_earlier_records(tmp_path):
    # Logged 50, 100, 150, then resumed from a step-50 checkpoint and logged 100, 150 again.
    steps_and_losses = [(50, 1.0), (100, 2.0), (150, 3.0), (100, 20.0), (150, 30.0)]
    (tmp_path / 'stats.jsonl').write_text(
        ''.join(json.dumps({'step': s, 'loss/G': g}) + '\n' for s, g in steps_and_losses))
    records = plot_training.read_stats(tmp_path)
    assert [(r['step'], r['loss/G']) for r in records] == [(50, 1.0), (100, 20.0), (150, 30.0)]


def test_panels_without_data_are_left_out(tmp_path):
    no_pose = [{'step': s, 'loss/D_real': 0.5, 'loss/D_fake': 0.4, 'loss/G': 1.0, 'loss/D_r1': 0.01} for s in (50, 100)]
    titles = plot_training.plot(no_pose, str(tmp_path / 'curve.png'))
    assert titles == ['GAN losses', 'R1 penalty (weighted)']
    only_gan = plot_training.plot([{'step': 50, 'loss/G': 1.0}], str(tmp_path / 'one.png'))
    assert only_gan == ['GAN losses'] and (tmp_path / 'one.png').stat().st_size > 0
    with_view_penalty = [dict(record, **{'loss/G_view': 0.01}) for record in no_pose]
    assert plot_training.plot(with_view_penalty, str(tmp_path / 'view.png'))[-1] == 'view-consistency penalty (weighted)'


def test_an_unfinished_last_line_is_skipped_and_a_damaged_one_is_a_clear_error(tmp_path, capsys):
    stats = tmp_path / 'stats.jsonl'
    stats.write_text('{"step": 50, "loss/G": 1.0}\n{"step": 100, "loss/G": 2.0}\n{"step": 150, "lo')
    assert [r['step'] for r in plot_training.read_stats(tmp_path)] == [50, 100]
    assert 'skipped the unfinished last line' in capsys.readouterr().out
    stats.write_text('{"step": 50, "loss/G": 1.0}\n{"step": 1\n')  # a complete but damaged last line
    with pytest.raises(ValueError, match="line 2 of '.*stats.jsonl' is not a JSON record"):
        plot_training.read_stats(tmp_path)
    stats.write_text('{"step": 50, "loss/G": 1.0}\n{"step": 1\n{"step": 150, "loss/G": 2.0}\n')
    with pytest.raises(ValueError, match="line 2 of '.*stats.jsonl' is not a JSON record"):
        plot_training.read_stats(tmp_path)
    stats.write_text('{"step": 50, "loss/G": 1.0}\n[1, 2]\n')
    with pytest.raises(ValueError, match="line 2 of '.*stats.jsonl' is not a training record"):
        plot_training.read_stats(tmp_path)
