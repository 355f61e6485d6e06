"""tools.contact_sheet: rows of seeds, evenly spaced frames, clear errors for missing or mismatched frames."""
import numpy as np
import pytest
from PIL import Image

from tools import contact_sheet


def write_frames(folder, seed, count, size=4):
    for i in range(count):
        Image.fromarray(np.full((size, size, 3), 10 * i + seed, dtype=np.uint8)).save(folder / f'grid_{seed}_{i}.png')


def test_rows_are_seeds_and_columns_evenly_spaced_frames(tmp_path):
    write_frames(tmp_path, 0, 12)
    write_frames(tmp_path, 1, 12)
    sheet = np.asarray(contact_sheet.contact_sheet(tmp_path, [0, 1], columns=3))
    step = 4 + contact_sheet.GAP
    assert sheet.shape == (2 * step - contact_sheet.GAP, 3 * step - contact_sheet.GAP, 3)
    # frames 0, 4, 8 of each seed (frame i has value 10 i + seed)
    assert [sheet[0, c * step, 0] for c in range(3)] == [0, 40, 80]
    assert [sheet[step, c * step, 0] for c in range(3)] == [1, 41, 81]
    assert sheet[0, 4, 0] == 255  # white gap


def test_first_frames_limits_the_span(tmp_path):
    write_frames(tmp_path, 0, 24)  # e.g. a sweep: frames 0..15 go one way, 16..23 back
    sheet = np.asarray(contact_sheet.contact_sheet(tmp_path, [0], columns=4, first_frames=16))
    step = 4 + contact_sheet.GAP
    assert [sheet[0, c * step, 0] for c in range(4)] == [0, 40, 80, 120]  # frames 0, 4, 8, 12


def test_missing_frames_are_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='no grid_3_<i>.png frames'):
        contact_sheet.contact_sheet(tmp_path, [3], columns=2)


def test_too_few_frames_or_mixed_sizes_are_clear_errors(tmp_path):
    write_frames(tmp_path, 0, 2)
    with pytest.raises(ValueError, match="seed 0 has 2 frame\\(s\\) to pick from .* fewer than the 6 columns asked for; "
                                         "lower --columns"):
        contact_sheet.contact_sheet(tmp_path, [0], columns=6)
    with pytest.raises(ValueError, match='has 1 frame\\(s\\) to pick from .*; raise --first_frames or lower --columns'):
        contact_sheet.contact_sheet(tmp_path, [0], columns=2, first_frames=1)
    assert np.asarray(contact_sheet.contact_sheet(tmp_path, [0], columns=2)).shape == (4, 10, 3)
    write_frames(tmp_path, 1, 2, size=8)
    with pytest.raises(ValueError, match='frames of seed 1 are 8x8 px, those of seed 0 4x4; re-render'):
        contact_sheet.contact_sheet(tmp_path, [0, 1], columns=2)
