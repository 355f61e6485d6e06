"""preprocess_dataset.py: POS, the FFHQ / Cats crops, and whole runs on tiny raw fixtures."""
import json
import math
import os

import numpy as np
import pytest
import scipy.io
import torch
from helpers import REFERENCE_DIR
from PIL import Image

import preprocess_dataset as pp
from datasets import read_pose, read_pose_npy, transform_matrix_to_camera_pos
from datasets.alignment import _weighted_roll


def rotation(yaw, pitch, roll):
    """R = Rz(roll) · Rx(pitch) · Ry(yaw), as used to make the reference landmarks."""
    cy, sy, cp, sp, cr, sr = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch), math.cos(roll), math.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ rx @ ry


def project(template, yaw, pitch, roll, scale, translate):
    """Weak-perspective landmarks [N, 2] (y up) of a template."""
    return scale * (template @ rotation(yaw, pitch, roll).T)[:, :2] + np.asarray(translate)


# ------------------------------------------------------------------------------------------
# POS
# ------------------------------------------------------------------------------------------
def test_pos_matches_released_reference():
    refs = torch.load(os.path.join(REFERENCE_DIR, 'small_refs.pt'), weights_only=True)['POS']
    for case in refs:
        template, cate = (pp.FACE_TEMPLATE, None) if case['kind'] == 'face' else (pp.CAT_TEMPLATE, 'cats')
        fit = pp.POS(case['xp_yup'].numpy(), template, cate=cate)
        assert isinstance(fit, pp.PoseFit)
        yaw, pitch, roll, translate, scale = fit  # the released output order
        assert yaw == pytest.approx(case['yaw'], abs=1e-6)
        assert pitch == pytest.approx(case['pitch'], abs=1e-6)
        assert roll == pytest.approx(case['roll'], abs=1e-6)
        np.testing.assert_allclose(translate, case['translate'].numpy(), atol=1e-6)
        assert scale == pytest.approx(case['scale'], rel=1e-6)


@pytest.mark.parametrize('template, cate', [(pp.FACE_TEMPLATE, None), (pp.CAT_TEMPLATE, 'cats')])
def test_pos_recovers_known_rotation(template, cate):
    # yaw = true yaw + pi/2, pitch = pi/2 - true pitch; translate and scale exactly.
    for yaw, pitch, roll in [(0.3, -0.1, 0.05), (-0.5, 0.2, -0.2), (0.0, 0.0, 0.1)]:
        xp = project(template, yaw, pitch, roll, 7.5, (120.0, 80.0))
        fit = pp.POS(xp, template, cate=cate)
        assert fit.yaw == pytest.approx(yaw + math.pi / 2, abs=1e-9)
        assert fit.pitch == pytest.approx(math.pi / 2 - pitch, abs=1e-9)
        np.testing.assert_allclose(fit.translate, [120.0, 80.0], atol=1e-9)
        assert fit.scale == pytest.approx(7.5, rel=1e-9)


def test_roll_formula_and_its_degenerate_case():
    # d = 10 degrees: roll2 + ln(10) degrees = 0.2 + 2.302585 * pi / 180.
    assert _weighted_roll(0.2 + math.radians(10), 0.2) == pytest.approx(0.2 + 0.0401871, abs=1e-6)
    assert _weighted_roll(0.2 - math.radians(10), 0.2) == pytest.approx(0.2 - 0.0401871, abs=1e-6)
    assert _weighted_roll(0.3, 0.3) == 0.3  # released: 0 * ln(0) = nan
    # An upright symmetric template projected without rotation: roll1 == roll2 == 0 (up to
    # rounding), where the released formula gives nan or a huge spurious rotation.
    template = np.array([[-1, 1, 0], [1, 1, 0], [0, 0, 1], [-0.8, -1, 0], [0.8, -1, 0.0]])
    fit = pp.POS(project(template, 0, 0, 0, 10, (50, 50)), template)
    assert fit.roll == 0.0


# ------------------------------------------------------------------------------------------
# Crops
# ------------------------------------------------------------------------------------------
def reflect(index, size):
    """numpy 'reflect' index (edge not repeated), for overhangs smaller than the size."""
    if index < 0:
        return -index
    if index >= size:
        return 2 * (size - 1) - index
    return index


def test_ffhq_crop_with_reflect_padding_matches_hand_computation():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))  # w0 = 40, h0 = 30
    target = 16
    pos = pp.PoseFit(math.pi / 2, math.pi / 2, 0.0, np.array([6.3, 27.1]), 9.0)
    # s' = 9 / 16 * 224 = 126; resized to (int(40 / 126 * 95), int(30 / 126 * 95)) = (30, 22).
    # left = int(15 - 8 + (6.3 - 20) * 95 / 126) = int(-3.33) = -3 (toward zero, not -4);
    # up = int(11 - 8 + (15 - 27.1) * 95 / 126) = int(-6.12) = -6.
    resized = np.asarray(img.resize((30, 22), resample=Image.LANCZOS))
    left, up = -3, -6
    expected = np.zeros((target, target, 3), dtype=np.uint8)
    for i in range(target):
        for j in range(target):
            expected[i, j] = resized[reflect(up + i, 22), reflect(left + j, 30)]
    out = pp.align_img_ffhq(img, pos, target_size=target)
    assert out.size == (target, target)
    np.testing.assert_array_equal(np.asarray(out), expected)

    # A crop inside the image is a plain slice: tx = 24 -> left = int(7 + 4 * 95 / 126) = 10.
    inside = pp.PoseFit(math.pi / 2, math.pi / 2, 0.0, np.array([24.0, 15.0]), 9.0)
    np.testing.assert_array_equal(np.asarray(pp.align_img_ffhq(img, inside, target_size=target)),
                                  resized[3:19, 10:26])


def bright_centroid(img):
    """(row, col) centroid of the bright pixels of a PIL image."""
    rows, cols = np.nonzero(np.asarray(img).astype(float).sum(axis=-1) > 300)
    return rows.mean(), cols.mean()


def test_cats_crop_centre_scale_and_roll_direction():
    # A 100 x 80 black image with a white 3 x 3 dot centred on pixel (row 30, col 60).
    img = np.zeros((80, 100, 3), dtype=np.uint8)
    img[29:32, 59:62] = 255
    half = 20.0  # 15 * scale
    pos = pp.PoseFit(0.0, 0.0, 0.0, np.array([50.0, 80 - 30.0]), half / 15)  # centre (50, 30)
    # Crop box x in [30, 70), y in [10, 50) at 1 px per px: the dot lands on (row 20, col 30).
    out = pp.align_img_cats(img, pos, target_size=40)
    assert out.size == (40, 40)
    assert bright_centroid(out) == pytest.approx((20, 30), abs=0.01)
    # roll = +90 degrees turns the image counter-clockwise: the dot moves above the centre.
    row, col = bright_centroid(pp.align_img_cats(img, pos._replace(roll=math.pi / 2), target_size=40))
    assert abs(row - 10) <= 1 and abs(col - 20) <= 1


# ------------------------------------------------------------------------------------------
# Whole runs on raw fixtures in the released layouts.
# ------------------------------------------------------------------------------------------
def noise_image(rng, height, width):
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def make_ffhq_raw(root):
    """Two good faces and four bad samples; returns the true (yaw, pitch) of the good ones."""
    rng = np.random.default_rng(1)
    os.makedirs(root / 'lm5p')
    os.makedirs(root / 'poses')
    truth = {}
    for name, yaw in [('00000', 0.2), ('00001', -0.1)]:
        noise_image(rng, 128, 128).save(root / f'{name}.png')
        xp = project(pp.FACE_TEMPLATE, yaw, 0.05, 0.0, 40.0, (64.0, 60.0))  # y up
        lines = [f'{x:.6f} {127 - y:.6f}' for x, y in xp]  # image rows: y' = h - 1 - y
        (root / 'lm5p' / f'{name}.txt').write_text('\n'.join(lines) + '\n')
        scipy.io.savemat(root / 'poses' / f'{name}.mat', {'angle': np.array([[0.05, yaw, 0.0]])})
        truth[name] = xp
    for name in ['no_landmarks', 'bad_landmarks', 'no_pose', 'broken_image']:
        noise_image(rng, 128, 128).save(root / f'{name}.png')
        (root / 'lm5p' / f'{name}.txt').write_text((root / 'lm5p' / '00000.txt').read_text())
        (root / 'poses' / f'{name}.mat').write_bytes((root / 'poses' / '00000.mat').read_bytes())
    os.remove(root / 'lm5p' / 'no_landmarks.txt')
    (root / 'lm5p' / 'bad_landmarks.txt').write_text('1 2\n3 4\nnot numbers\n')
    os.remove(root / 'poses' / 'no_pose.mat')
    (root / 'broken_image.png').write_bytes(b'\x89PNG\r\n\x1a\n this is not an image')
    return truth


def reasons(report):
    return {entry['name']: entry['reason'] for entry in report['skipped']}


def test_ffhq_run_outputs_report_and_rerun(tmp_path):
    raw, out = tmp_path / 'raw', tmp_path / 'out'
    truth = make_ffhq_raw(raw)
    report = pp.preprocess_raw('ffhq', str(raw), str(out), workers=1, progress=False)
    assert (report['written'], report['already_done']) == (2, 0)
    skipped = reasons(report)
    assert sorted(skipped) == ['bad_landmarks', 'broken_image', 'no_landmarks', 'no_pose']
    assert 'missing landmarks' in skipped['no_landmarks']
    assert 'garbled landmarks' in skipped['bad_landmarks']
    assert 'missing pose' in skipped['no_pose']
    assert 'unreadable image' in skipped['broken_image']
    assert json.loads((out / pp.REPORT_NAME).read_text()) == report
    assert sorted(os.listdir(out)) == ['00000.png', '00001.png', 'poses', pp.REPORT_NAME]

    for name, xp in truth.items():
        aligned = Image.open(out / f'{name}.png')
        assert aligned.size == (256, 256) and aligned.mode == 'RGB'
        raw_img = Image.open(raw / f'{name}.png')
        fit = pp.POS(xp, pp.FACE_TEMPLATE)
        np.testing.assert_array_equal(np.asarray(aligned), np.asarray(pp.align_img_ffhq(raw_img, fit)))
        assert (out / 'poses' / f'{name}.mat').read_bytes() == (raw / 'poses' / f'{name}.mat').read_bytes()
    angle = scipy.io.loadmat(out / 'poses' / '00000.mat')['angle']
    expected = [-(angle[0, 0] - 0.1) + math.pi / 2, angle[0, 1] + math.pi / 2]
    np.testing.assert_allclose(read_pose(str(out / 'poses' / '00000.mat')).numpy(), expected, atol=1e-6)

    again = pp.preprocess_raw('ffhq', str(raw), str(out), workers=1, progress=False)
    assert (again['written'], again['already_done'], len(again['skipped'])) == (0, 2, 4)
    redo = pp.preprocess_raw('ffhq', str(raw), str(out), workers=1, overwrite=True, progress=False)
    assert redo['written'] == 2


def test_cats_run(tmp_path):
    raw, out = tmp_path / 'raw', tmp_path / 'out'
    rng = np.random.default_rng(2)
    os.makedirs(raw / 'CAT_00')
    yaw, pitch = -0.3, 0.15
    xp = project(pp.CAT_TEMPLATE, yaw, pitch, 0.1, 3.0, (100.0, 90.0))  # y up
    coords = ' '.join(f'{x:.4f} {160 - y:.4f}' for x, y in xp)  # y' = height - y
    noise_image(rng, 160, 200).save(raw / 'CAT_00' / 'cat1.jpg')  # sub-folder as downloaded
    (raw / 'CAT_00' / 'cat1.jpg.cat').write_text(f'9 {coords} ')
    noise_image(rng, 160, 200).save(raw / 'cat2.jpg')
    (raw / 'cat2.jpg.cat').write_text('9 1 2 3\n')
    noise_image(rng, 160, 200).save(raw / 'cat3.jpg')

    report = pp.preprocess_raw('cats', str(raw), str(out), workers=1, progress=False)
    assert report['written'] == 1
    skipped = reasons(report)
    assert 'garbled landmarks' in skipped['cat2'] and 'missing landmarks' in skipped['cat3']
    assert Image.open(out / 'cat1.png').size == (256, 256)
    pose = np.load(out / 'poses' / 'cat1_pose.npy')
    np.testing.assert_allclose(pose, [math.pi / 2 - pitch, yaw + math.pi / 2], atol=1e-4)  # [pitch, yaw]
    np.testing.assert_allclose(read_pose_npy(str(out / 'poses' / 'cat1_pose.npy')).numpy(),
                               [pose[0] + 0.14, pose[1]], atol=1e-6)


def test_carla_run_parallel_and_command_line(tmp_path, capsys):
    raw, out = tmp_path / 'raw', tmp_path / 'out'
    rng = np.random.default_rng(3)
    os.makedirs(raw / 'poses')
    extrinsics = torch.load(os.path.join(REFERENCE_DIR, 'small_refs.pt'), weights_only=True)['poses']['extrinsics'].numpy()
    for name in ['000', '001', '002']:
        noise_image(rng, 64, 64).save(raw / f'{name}.png')
        np.save(raw / 'poses' / f'{name}_extrinsics.npy', extrinsics)
    noise_image(rng, 64, 64).save(raw / 'no_pose.png')
    noise_image(rng, 64, 64).save(raw / 'bad_pose.png')
    np.save(raw / 'poses' / 'bad_pose_extrinsics.npy', np.eye(3))

    report = pp.preprocess_raw('carla', str(raw), str(out), workers=2, progress=False)
    assert report['written'] == 3
    skipped = reasons(report)
    assert 'missing pose' in skipped['no_pose'] and 'garbled pose' in skipped['bad_pose']
    for name in ['000', '001', '002']:
        assert Image.open(out / f'{name}.png').size == (128, 128)
        stored = np.load(out / 'poses' / f'{name}_extrinsics.npy')
        np.testing.assert_array_equal(stored, extrinsics)
        np.testing.assert_allclose(transform_matrix_to_camera_pos(stored).numpy(), [1.0708, -0.6292], atol=1e-4)

    assert pp.main([f'--raw_dataset_path={raw}', '--cate=carla', f'--output_dir={out}', '--workers=1']) == 0
    assert f'carla: 0 written, 3 already done, 2 skipped -> {out / pp.REPORT_NAME}' in capsys.readouterr().out
    assert pp.main([f'--raw_dataset_path={tmp_path / "nowhere"}', '--cate=carla', f'--output_dir={out}']) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith('error:') and 'does not exist' in error and '\n' not in error


def test_a_run_that_skips_every_sample_fails(tmp_path, capsys):
    raw, out = tmp_path / 'raw', tmp_path / 'out'
    (raw / 'poses').mkdir(parents=True)
    noise_image(np.random.default_rng(0), 64, 64).save(raw / 'no_pose.png')
    assert pp.main([f'--raw_dataset_path={raw}', '--cate=carla', f'--output_dir={out}', '--workers=1']) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert error.startswith('error: every sample was skipped (e.g. no_pose: missing pose')
