"""EG3D dataset.json import (preprocess_dataset.py --cate posed) and export (--export eg3d)."""
import json
import math
import os
import shutil

import numpy as np
import pytest
import scipy.io
import torch
from eg3d_reference import FFHQ_LOOK_AT, FFHQ_RADIUS, eg3d_camera
from PIL import Image

import preprocess_dataset as pp
from datasets import CATS, FFHQ, DatasetError, PosedImageFolder, eg3d, synthetic
from generators import cameras

SIZE = 16                      # image side of the tiny sets
FOV = synthetic.FOV_DEG        # the synthetic renderer's fov
# (phi, theta) of the EG3D-style set: frontal, yawed, from above, from behind.
TRUE_POSES = [(math.pi / 2, math.pi / 2), (math.pi / 2, math.pi / 2 + 0.6), (0.7, 1.2), (1.2, 3.8)]


def eg3d_focal(fov, size):
    """The focal length whose EG3D pixel-centre rays are our fov's: (N - 1) / (2N tan(fov / 2))."""
    return (size - 1) / (2 * size * math.tan(math.radians(fov) / 2))


def label(matrix, focal):
    return np.concatenate([np.asarray(matrix).reshape(-1), [focal, 0, 0.5, 0, focal, 0.5, 0, 0, 1]]).tolist()


def write_eg3d_set(root, poses=TRUE_POSES):
    """An EG3D-style set rendered by the synthetic renderer at known cameras (EG3D's FFHQ scale),
    images in a sub-folder as EG3D's dataset_tool writes them. Returns {name: rgb uint8}."""
    rng = np.random.default_rng(0)
    labels, images = [], {}
    for index, (phi, theta) in enumerate(poses):
        rgb, _, _, _ = synthetic.render_view(synthetic.sample_car(rng), (phi, theta), SIZE)
        pixels = np.round(rgb * 255).astype(np.uint8)
        name = f'img{index:08d}'
        os.makedirs(os.path.join(root, '00000'), exist_ok=True)
        Image.fromarray(pixels).save(os.path.join(root, '00000', f'{name}.png'))
        h, v = math.pi - theta, math.pi / 2 * (1 - math.cos(phi))  # EG3D's LookAtPoseSampler angles
        labels.append([f'00000/{name}.png', label(eg3d_camera(h, v, FFHQ_LOOK_AT, FFHQ_RADIUS), eg3d_focal(FOV, SIZE))])
        images[name] = pixels
    with open(os.path.join(root, 'dataset.json'), 'w') as handle:
        json.dump({'labels': labels}, handle)
    return images


def read_folder(root, dataset_class=PosedImageFolder):
    """{name: (rgb uint8, camera_pos [2])} of a training folder, as the loader reads it (not flipped)."""
    dataset = dataset_class(root, img_size=SIZE, real_pos=True)
    return {os.path.splitext(os.path.basename(path))[0]: (
        np.array(Image.open(path).convert('RGB')), dataset.read_camera_pos(dataset.pose_path(i), flip=False).numpy())
        for i, path in enumerate(dataset.image_paths)}


def our_extrinsics(phi, theta):
    origin = cameras.camera_origin_from_pos(torch.tensor([[phi, theta]], dtype=torch.float64))
    return synthetic.to_carla_extrinsics(cameras.look_at_cam2world(origin)[0].numpy())


@pytest.mark.parametrize('as_zip', [False, True])
def test_synthetic_eg3d_set_imports_to_its_true_cameras(tmp_path, as_zip, capsys):
    source = tmp_path / 'eg3d'
    images = write_eg3d_set(source)
    if as_zip:
        source = shutil.make_archive(str(tmp_path / 'eg3d_set'), 'zip', source)
    output = tmp_path / 'imported'
    assert pp.main(['--cate', 'posed', '--raw_dataset_path', str(source), '--output_dir', str(output),
                    '--workers', '1']) == 0
    printed = capsys.readouterr().out
    assert f'{FOV:.4f} deg at {SIZE} px' in printed and 'radius 2.7 -> 1' in printed
    for index, (phi, theta) in enumerate(TRUE_POSES):
        name = f'img{index:08d}'
        np.testing.assert_allclose(np.load(output / 'poses' / f'{name}_extrinsics.npy'), our_extrinsics(phi, theta),
                                   atol=1e-5)
    imported = read_folder(output)
    assert sorted(imported) == sorted(images)
    for index, (phi, theta) in enumerate(TRUE_POSES):
        pixels, camera_pos = imported[f'img{index:08d}']
        np.testing.assert_array_equal(pixels, images[f'img{index:08d}'])
        np.testing.assert_allclose(camera_pos, [phi, theta], atol=1e-5)
    camera = json.loads((output / 'camera.json').read_text())
    assert cameras.fov_from_focal(camera['focal'], SIZE) == pytest.approx(FOV, abs=1e-9)
    np.testing.assert_allclose(camera['look_at'], FFHQ_LOOK_AT, atol=1e-9)  # fitted
    assert camera['radius'] == pytest.approx(FFHQ_RADIUS)


def test_import_resizes_and_takes_a_given_centre(tmp_path):
    write_eg3d_set(tmp_path / 'eg3d')
    report = eg3d.import_eg3d(tmp_path / 'eg3d', tmp_path / 'out', img_size=8, look_at=FFHQ_LOOK_AT, radius=5.4,
                              progress=False)
    assert report['written'] == len(TRUE_POSES) and report['image_sizes'] == [8]
    expected = our_extrinsics(math.pi / 2, math.pi / 2)
    expected[:3, 3] /= 2  # half as far: radius 5.4 = 2 x 2.7
    np.testing.assert_allclose(np.load(tmp_path / 'out' / 'poses' / 'img00000000_extrinsics.npy'), expected, atol=1e-9)
    again = eg3d.import_eg3d(tmp_path / 'eg3d', tmp_path / 'out', img_size=8, look_at=FFHQ_LOOK_AT, radius=5.4,
                             progress=False)
    assert again['already_done'] == len(TRUE_POSES)
    with pytest.raises(DatasetError, match='other settings'):
        eg3d.import_eg3d(tmp_path / 'eg3d', tmp_path / 'out', img_size=16, progress=False)


def test_export_import_round_trip_synthetic(tmp_path, capsys):
    data = tmp_path / 'synthetic'
    synthetic.render_synthetic_dataset(data, num_images=4, img_size=SIZE, seed=3, workers=1, progress=False)
    exported, imported = tmp_path / 'exported', tmp_path / 'imported'
    assert pp.main(['--export', 'eg3d', '--cate', 'synthetic', '--data_dir', str(data), '--output_dir', str(exported),
                    '--radius', '2.7', '--look_at', '0,0,0.2', '--workers', '1']) == 0
    assert 'synthetic: 4 images exported' in capsys.readouterr().out
    labels = json.loads((exported / 'dataset.json').read_text())['labels']
    assert [name for name, _ in labels] == [f'{i:06d}.png' for i in range(4)]
    np.testing.assert_allclose(labels[0][1][16:], [eg3d_focal(FOV, SIZE), 0, 0.5, 0, eg3d_focal(FOV, SIZE), 0.5, 0, 0, 1])
    assert pp.main(['--cate', 'posed', '--raw_dataset_path', str(exported), '--output_dir', str(imported),
                    '--workers', '1']) == 0
    for i in range(4):
        name = f'{i:06d}'
        np.testing.assert_allclose(np.load(imported / 'poses' / f'{name}_extrinsics.npy'),
                                   np.load(data / 'poses' / f'{name}_extrinsics.npy'), atol=1e-9)
        np.testing.assert_array_equal(np.array(Image.open(imported / f'{name}.png')), np.array(Image.open(data / f'{name}.png')))
    assert eg3d.dataset_focal(imported) == pytest.approx(eg3d.dataset_focal(data), abs=1e-12)


def write_angle_folder(root, dataset_class, count=3):
    """A tiny FFHQ (.mat angles) or Cats (_pose.npy) training folder."""
    rng = np.random.default_rng(1)
    os.makedirs(root / 'poses')
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(root / f'{i:02d}.png')
        pitch, yaw = rng.uniform(-0.4, 0.4, size=2)
        if dataset_class is FFHQ:
            scipy.io.savemat(root / 'poses' / f'{i:02d}.mat', {'angle': np.array([[pitch, yaw, 0.0]])})
        else:
            np.save(root / 'poses' / f'{i:02d}_pose.npy', np.array([pitch + math.pi / 2, yaw + math.pi / 2]))


@pytest.mark.parametrize('cate, dataset_class', [('ffhq', FFHQ), ('cats', CATS)])
def test_export_import_round_trip_angle_datasets(tmp_path, cate, dataset_class):
    data = tmp_path / cate
    write_angle_folder(data, dataset_class)
    assert pp.main(['--export', 'eg3d', '--cate', cate, '--data_dir', str(data), '--output_dir', str(tmp_path / 'x'),
                    '--workers', '1']) == 0
    assert pp.main(['--cate', 'posed', '--raw_dataset_path', str(tmp_path / 'x'), '--output_dir', str(tmp_path / 'y'),
                    '--workers', '1']) == 0
    original, imported = read_folder(data, dataset_class), read_folder(tmp_path / 'y')
    assert sorted(original) == sorted(imported)
    for name, (pixels, camera_pos) in original.items():
        np.testing.assert_array_equal(imported[name][0], pixels)
        np.testing.assert_allclose(imported[name][1], camera_pos, atol=1e-5)
    # The released camera of the category: fov 12 at 256 px.
    assert cameras.fov_from_focal(eg3d.dataset_focal(tmp_path / 'y'), 256) == pytest.approx(12.0, abs=1e-9)


# ------------------------------------------------------------------------------------------
# Bad sets: each problem gives one clear line.
# ------------------------------------------------------------------------------------------
def rotated(matrix, degrees):
    """The camera turned by `degrees` about its own y axis (no longer looking at the centre)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    turned = np.array(matrix, dtype=np.float64)
    turned[:3, :3] = turned[:3, :3] @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return turned


def break_labels(root, change):
    path = root / 'dataset.json'
    contents = json.loads(path.read_text())
    change(contents['labels'])
    path.write_text(json.dumps(contents))


def set_value(index, position, value):
    def change(labels):
        labels[index][1][position] = value
    return change


BAD_SETS = {
    'no dataset.json': (lambda root: (root / 'dataset.json').unlink(), 'no dataset.json'),
    'not JSON': (lambda root: (root / 'dataset.json').write_text('{"labels": [['), 'not valid JSON'),
    'labels null': (lambda root: (root / 'dataset.json').write_text('{"labels": null}'), 'no camera labels'),
    'short label': (lambda root: break_labels(root, lambda labels: labels[1][1].pop()), '1 malformed labels'),
    'duplicate': (lambda root: break_labels(root, lambda labels: labels.append(labels[0])), '1 duplicate labels'),
    'label without image': (lambda root: (root / '00000' / 'img00000002.png').unlink(), '1 labels without an image'),
    'image without label': (lambda root: break_labels(root, lambda labels: labels.pop(3)), '1 images without a label'),
    'non-finite': (lambda root: break_labels(root, set_value(2, 3, float('nan'))), '1 labels with non-finite numbers'),
    'non-rigid': (lambda root: break_labels(root, set_value(1, 0, 1.5)), '1 non-rigid cam2world'),
    'off-centre principal point': (lambda root: break_labels(root, set_value(0, 18, 0.6)), '1 intrinsics'),
    'fov varies': (lambda root: break_labels(root, lambda labels: labels[2][1].__setitem__(slice(16, 25),
                                                                                            label(np.eye(4), 4.2647)[16:])),
                   'fov varies'),
    'not looking at the centre': (lambda root: break_labels(root, lambda labels: labels[1].__setitem__(
        1, label(rotated(np.reshape(labels[1][1][:16], (4, 4)), 20.0), eg3d_focal(FOV, SIZE)))),
        '1 cameras not looking at the centre'),
}


@pytest.mark.parametrize('case', list(BAD_SETS))
def test_bad_dataset_json_gives_one_clear_error(tmp_path, case, capsys):
    write_eg3d_set(tmp_path / 'eg3d')
    spoil, expected = BAD_SETS[case]
    spoil(tmp_path / 'eg3d')
    with pytest.raises(DatasetError, match=expected) as error:
        eg3d.import_eg3d(tmp_path / 'eg3d', tmp_path / 'out', progress=False, look_at=FFHQ_LOOK_AT)
    assert '\n' not in str(error.value)
    assert not (tmp_path / 'out').exists()  # refused before anything is written
    assert pp.main(['--cate', 'posed', '--raw_dataset_path', str(tmp_path / 'eg3d'), '--output_dir',
                    str(tmp_path / 'out'), '--workers', '1', '--look_at', '0,0,0.2']) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: ') and err.count('\n') == 1


def test_all_problems_in_one_message(tmp_path):
    write_eg3d_set(tmp_path / 'eg3d')
    break_labels(tmp_path / 'eg3d', lambda labels: (labels.append(labels[0]), labels[1][1].__setitem__(0, 2.0)))
    (tmp_path / 'eg3d' / 'extra.png').write_bytes(b'')
    with pytest.raises(DatasetError) as error:
        eg3d.import_eg3d(tmp_path / 'eg3d', tmp_path / 'out', progress=False)
    message = str(error.value)
    assert '1 duplicate labels (00000/img00000000.png)' in message
    assert '1 images without a label (extra.png)' in message
    assert '1 non-rigid cam2world' in message and '\n' not in message


def test_rolled_camera_is_accepted_with_a_larger_tolerance(tmp_path):
    write_eg3d_set(tmp_path / 'eg3d')
    BAD_SETS['not looking at the centre'][0](tmp_path / 'eg3d')
    report = eg3d.import_eg3d(tmp_path / 'eg3d', tmp_path / 'out', look_at=FFHQ_LOOK_AT, look_at_tolerance=25.0,
                              progress=False)
    assert report['look_at_error_deg']['max'] == pytest.approx(20.0, abs=1e-6)


@pytest.mark.parametrize('flags, message', [
    (['--radius', 'nan'], '--radius must be a positive number'),
    (['--radius', '-1'], '--radius must be a positive number'),
    (['--look_at', 'nan,0,0'], '--look_at must be three numbers'),
    (['--look_at', '0,0'], '--look_at must be three numbers'),
])
def test_bad_camera_overrides_are_usage_errors(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        pp.main(['--cate', 'posed', '--raw_dataset_path', str(tmp_path), '--output_dir', str(tmp_path / 'out'), *flags])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()
