"""Pose readers against the released outputs; posed image folders and their loader."""
import math
import os

import numpy as np
import pytest
import scipy.io
import torch
from helpers import REFERENCE_DIR
from PIL import Image

from configs import get_config
from datasets import (
    CARLA,
    CATS,
    FFHQ,
    DatasetError,
    PosedImageFolder,
    begin_epoch,
    build_dataloader,
    build_dataset,
    read_pose,
    read_pose_npy,
    transform_matrix_to_camera_pos,
)

IMG = 8  # side of the test images


# --------------------------------------------------------------------------------------------
# Pose readers.
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def pose_ref():
    return torch.load(os.path.join(REFERENCE_DIR, 'small_refs.pt'), weights_only=True)['poses']


def test_read_pose_matches_reference(pose_ref, tmp_path):
    path = tmp_path / 'face.mat'
    scipy.io.savemat(path, {'angle': pose_ref['mat_angle'].numpy()})
    for flip, key in [(False, 'read_pose'), (True, 'read_pose_flip')]:
        pos = read_pose(path, flip=flip)
        assert pos.dtype == torch.float32 and pos.shape == (2,)
        torch.testing.assert_close(pos, pose_ref[key], atol=1e-6, rtol=0)


def test_read_pose_npy_matches_reference(pose_ref, tmp_path):
    path = tmp_path / 'cat_pose.npy'
    np.save(path, pose_ref['npy'].numpy())
    for flip, key in [(False, 'read_pose_npy'), (True, 'read_pose_npy_flip')]:
        pos = read_pose_npy(path, flip=flip)
        assert pos.dtype == torch.float32 and pos.shape == (2,)
        torch.testing.assert_close(pos, pose_ref[key], atol=1e-6, rtol=0)


def test_extrinsics_match_reference_and_leave_input_alone(pose_ref):
    matrix = pose_ref['extrinsics'].numpy().copy()
    before = matrix.copy()
    for flip, key in [(False, 'extrinsics_pos'), (True, 'extrinsics_pos_flip')]:
        pos = transform_matrix_to_camera_pos(matrix, flip=flip)
        assert pos.dtype == torch.float32 and pos.shape == (2,)
        torch.testing.assert_close(pos, pose_ref[key], atol=1e-6, rtol=0)
    assert np.array_equal(matrix, before)
    # 3x4 and tensor inputs give the same pose
    torch.testing.assert_close(transform_matrix_to_camera_pos(matrix[:3]), pose_ref['extrinsics_pos'],
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(transform_matrix_to_camera_pos(pose_ref['extrinsics']), pose_ref['extrinsics_pos'],
                               atol=1e-6, rtol=0)


def camera_at(x, y, z):
    """A 4x4 camera-to-world matrix with identity rotation and translation (x, y, z)."""
    matrix = np.eye(4)
    matrix[:3, 3] = [x, y, z]
    return matrix


@pytest.mark.parametrize('position, expected', [
    # after the row reorder c = (y, z, x): theta = atan2(-y, x) + pi/2, phi = atan2(-z, |(y, x)|) + pi/2
    ((1.0, 0.0, 0.0), (math.pi / 2, math.pi / 2)),
    ((0.0, -1.0, 0.0), (math.pi / 2, math.pi)),
    ((math.cos(0.3), 0.0, math.sin(0.3)), (math.pi / 2 - 0.3, math.pi / 2)),
    ((0.0, 0.0, 1.0), (0.0, math.pi / 2)),  # the pole: no division by zero
])
def test_extrinsics_hand_cases(position, expected):
    pos = transform_matrix_to_camera_pos(camera_at(*position))
    torch.testing.assert_close(pos, torch.tensor(expected, dtype=torch.float32))


def test_extrinsics_bad_shape():
    with pytest.raises(ValueError, match='3x4 or 4x4'):
        transform_matrix_to_camera_pos(np.eye(3))


def test_pose_formulas_by_hand(tmp_path):
    scipy.io.savemat(tmp_path / 'a.mat', {'angle': np.array([[0.1, 0.0, 0.0]])})
    # pitch 0.1 is level, yaw 0 is frontal -> [pi/2, pi/2], unchanged by a flip
    torch.testing.assert_close(read_pose(tmp_path / 'a.mat'), torch.tensor([math.pi / 2, math.pi / 2]))
    torch.testing.assert_close(read_pose(tmp_path / 'a.mat', flip=True), torch.tensor([math.pi / 2, math.pi / 2]))
    np.save(tmp_path / 'b.npy', np.array([1.0, 2.0]))
    torch.testing.assert_close(read_pose_npy(tmp_path / 'b.npy', flip=True), torch.tensor([1.14, math.pi - 2.0]))
    scipy.io.savemat(tmp_path / 'c.mat', {'yaw': np.zeros(3)})
    with pytest.raises(KeyError, match="'angle'"):
        read_pose(tmp_path / 'c.mat')


# --------------------------------------------------------------------------------------------
# Tiny image folders.
# --------------------------------------------------------------------------------------------
def gradient_image(value):
    """IMG x IMG RGB uint8 image: red ramps along the width, green = value, blue = 0."""
    pixels = np.zeros((IMG, IMG, 3), dtype=np.uint8)
    pixels[..., 0] = np.linspace(0, 255, IMG).round().astype(np.uint8)[None, :]
    pixels[..., 1] = value
    return pixels


def extrinsics_for(yaw):
    """A camera-to-world matrix whose camera_pos theta is pi/2 + yaw (level camera)."""
    matrix = np.eye(4)
    # reordered c = (y, z, x); theta = atan2(-y, x) + pi/2 -> y = -sin(yaw), x = cos(yaw)
    matrix[:3, 3] = [math.cos(yaw), -math.sin(yaw), 0.0]
    return matrix


def write_pose(kind, pose_dir, stem, i):
    """Write the pose of image i (yaw = 0.1 * i) in the layout of dataset `kind`."""
    yaw = 0.1 * i
    if kind is FFHQ:
        scipy.io.savemat(pose_dir / f'{stem}.mat', {'angle': np.array([[0.1, yaw, 0.0]], dtype=np.float32)})
    elif kind is CATS:
        np.save(pose_dir / f'{stem}_pose.npy', np.array([math.pi / 2 - 0.14, math.pi / 2 + yaw]))
    else:
        np.save(pose_dir / f'{stem}_extrinsics.npy', extrinsics_for(yaw))


def make_folder(root, kind, names=('b', 'a', 'c', 'd'), ext='.png'):
    """Images named `names` (green = 10 * position) with poses of yaw 0.1 * position."""
    root.mkdir(parents=True, exist_ok=True)
    (root / 'poses').mkdir(exist_ok=True)
    for i, stem in enumerate(names):
        Image.fromarray(gradient_image(10 * i)).save(root / f'{stem}{ext}')
        write_pose(kind, root / 'poses', stem, i)
    return root


ALL_KINDS = [FFHQ, CATS, CARLA, PosedImageFolder]


@pytest.mark.parametrize('kind', ALL_KINDS)
def test_items_shapes_range_sorting(kind, tmp_path):
    root = make_folder(tmp_path / 'data', kind)
    (root / 'notes.txt').write_text('not an image')
    dataset = kind(dataset_path=str(root), img_size=IMG, real_pos=True, flip_probability=0.0)
    assert len(dataset) == 4
    assert [os.path.basename(p) for p in dataset.image_paths] == ['a.png', 'b.png', 'c.png', 'd.png']
    image, pos = dataset[0]  # 'a' was written second: green = 10, yaw = 0.1
    assert image.shape == (3, IMG, IMG) and image.dtype == torch.float32
    assert pos.shape == (2,) and pos.dtype == torch.float32
    assert image.min() >= -1 and image.max() <= 1
    assert image[0, 0, 0].item() == -1.0 and image[0, 0, -1].item() == 1.0  # red ramp ends 0 and 255
    assert image[1, 0, 0].item() == pytest.approx(10 / 255 * 2 - 1)
    torch.testing.assert_close(pos, torch.tensor([math.pi / 2, math.pi / 2 + 0.1]))


@pytest.mark.parametrize('kind', ALL_KINDS)
def test_flip_mirrors_image_and_pose(kind, tmp_path):
    root = make_folder(tmp_path / 'data', kind)
    plain = kind(dataset_path=root, img_size=IMG, flip_probability=0.0)
    flipped = kind(dataset_path=root, img_size=IMG, flip_probability=1.0)
    for index in range(len(plain)):
        image, pos = plain[index]
        image_f, pos_f = flipped[index]
        assert torch.equal(image_f, torch.flip(image, dims=[2]))
        assert image_f[0, 0, 0].item() == 1.0  # the red ramp now starts bright
        # every mirrored pose here is theta -> pi - theta, phi unchanged
        torch.testing.assert_close(pos_f, torch.stack([pos[0], math.pi - pos[1]]))


def test_flip_rate_and_seed_reproducibility(tmp_path):
    root = make_folder(tmp_path / 'data', CARLA)
    dataset = CARLA(dataset_path=root, img_size=IMG)  # released p = 0.5

    def flips(seed):
        torch.manual_seed(seed)
        return [bool(dataset[0][0][0, 0, 0] > 0) for _ in range(200)]

    first = flips(3)
    assert first == flips(3)
    assert 70 < sum(first) < 130  # ~100 expected; binomial sd ~7


def test_resize_to_img_size(tmp_path):
    root = make_folder(tmp_path / 'data', CATS, ext='.jpg')
    dataset = CATS(dataset_path=root, img_size=4, flip_probability=0.0)
    image, _ = dataset[1]
    assert image.shape == (3, 4, 4)
    assert image[0, 0, 0] < image[0, 0, -1]  # the ramp survives the Lanczos downsampling


def test_real_pos_false_needs_no_poses(tmp_path):
    root = make_folder(tmp_path / 'data', FFHQ)
    for path in (root / 'poses').iterdir():
        path.unlink()
    dataset = FFHQ(dataset_path=root, img_size=IMG, real_pos=False)
    assert torch.equal(dataset[0][1], torch.zeros(2))


def test_missing_folder_error(tmp_path):
    missing = tmp_path / 'nowhere'
    with pytest.raises(DatasetError) as info:
        FFHQ(dataset_path=missing, img_size=IMG)
    message = str(info.value)
    assert str(missing) in message and 'preprocess_dataset.py' in message and '--cate=ffhq' in message
    assert f'--output_dir {missing}' in message and '\n' not in message
    with pytest.raises(DatasetError) as info:
        CARLA(dataset_path=missing, img_size=IMG)
    assert '--cate=carla' in str(info.value)
    with pytest.raises(DatasetError) as info:  # the synthetic cars need no raw data, but the config's poses
        PosedImageFolder(dataset_path=missing, img_size=IMG)
    message = str(info.value)
    assert '--cate synthetic --config' in message and f'--output_dir {missing}' in message
    assert '--raw_dataset_path=./raw_data/synthetic' not in message and '\n' not in message


def test_empty_folder_error(tmp_path):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'readme.txt').write_text('x')
    with pytest.raises(DatasetError, match='no .png/.jpg images') as info:
        CATS(dataset_path=tmp_path / 'empty', img_size=IMG)
    assert str(tmp_path / 'empty') in str(info.value)


def test_missing_pose_error(tmp_path):
    root = make_folder(tmp_path / 'data', CATS)
    (root / 'poses' / 'c_pose.npy').unlink()
    with pytest.raises(DatasetError) as info:
        CATS(dataset_path=root, img_size=IMG)
    message = str(info.value)
    assert str(root / 'c.png') in message and 'c_pose.npy' in message and '1 of 4' in message


def test_missing_pose_folder_error(tmp_path):
    root = tmp_path / 'data'
    root.mkdir()
    Image.fromarray(gradient_image(0)).save(root / 'x.png')
    with pytest.raises(DatasetError, match='x_extrinsics.npy'):
        PosedImageFolder(dataset_path=root, img_size=IMG)


def test_bad_files_are_all_found_at_start_in_one_message(tmp_path):
    root = make_folder(tmp_path / 'data', PosedImageFolder, names=('a', 'b', 'c', 'd', 'e'))
    (root / 'b.png').write_bytes(b'this is not a png')
    (root / 'c.png').write_bytes(b'')
    (root / 'poses' / 'd_extrinsics.npy').write_bytes(b'garbled')
    nan_pose = np.eye(4)
    nan_pose[0, 3] = np.nan
    np.save(root / 'poses' / 'e_extrinsics.npy', nan_pose)
    with pytest.raises(DatasetError) as info:
        PosedImageFolder(dataset_path=root, img_size=IMG)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and message.startswith(f"4 bad files in '{root}'")
    assert f"'{root / 'b.png'}' (not a readable image" in message
    assert f"'{root / 'c.png'}' (empty file)" in message
    assert f"pose file '{root / 'poses' / 'd_extrinsics.npy'}' cannot be read" in message
    assert f"pose file '{root / 'poses' / 'e_extrinsics.npy'}' holds a non-finite pose" in message


def test_garbled_pose_files_are_one_line_errors(tmp_path):
    for kind, name, content in ((FFHQ, 'a.mat', b'MATLAB garbage'), (CATS, 'a_pose.npy', b'\x93NUMPY junk')):
        root = make_folder(tmp_path / kind.__name__, kind, names=('a', 'b'))
        (root / 'poses' / name).write_bytes(content)
        with pytest.raises(DatasetError, match=r"1 bad files in .*pose file '.*a(_pose\.npy|\.mat)' cannot be read"):
            kind(dataset_path=root, img_size=IMG)


def test_corrupt_pixels_behind_a_valid_header_fail_when_loaded(tmp_path):
    root = make_folder(tmp_path / 'data', PosedImageFolder)
    noise = np.random.default_rng(0).integers(0, 256, (IMG, IMG, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / 'b.png')
    data = (root / 'b.png').read_bytes()
    (root / 'b.png').write_bytes(data[:len(data) // 2])  # header intact, pixel data cut
    dataset = PosedImageFolder(dataset_path=root, img_size=IMG)
    dataset[0]  # 'a' still loads
    with pytest.raises(DatasetError) as info:
        dataset[1]
    assert str(root / 'b.png') in str(info.value) and 'replace or delete' in str(info.value)


def test_bad_arguments(tmp_path):
    root = make_folder(tmp_path / 'data', CARLA)
    with pytest.raises(ValueError, match='flip_probability'):
        CARLA(dataset_path=root, img_size=IMG, flip_probability=1.5)
    with pytest.raises(TypeError):
        CARLA(dataset_path=root, img_size=IMG, unknown_option=1)


# --------------------------------------------------------------------------------------------
# build_dataset / build_dataloader.
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize('config_name, kind', [('FFHQ_default', FFHQ), ('CATS_default', CATS),
                                               ('CARLA_default', CARLA), ('TINY_test', PosedImageFolder)])
def test_build_dataset_with_data_dir(config_name, kind, tmp_path):
    root = make_folder(tmp_path / 'data', kind)
    config = get_config(config_name)
    dataset = build_dataset(config, data_dir=str(root))
    assert type(dataset) is kind
    assert dataset.root == str(root)
    assert dataset.img_size == config['global']['img_size']
    image, _ = dataset[0]
    assert image.shape[-1] == config['global']['img_size']
    assert config == get_config(config_name)  # config untouched


def test_build_dataset_uses_config_path(tmp_path):
    root = make_folder(tmp_path / 'data', PosedImageFolder)
    config = get_config('TINY_test')
    config['dataset']['kwargs']['dataset_path'] = str(root)
    assert build_dataset(config).root == str(root)
    config['dataset']['class'] = 'Nope'
    with pytest.raises(KeyError, match='unknown dataset class'):
        build_dataset(config)


def test_dataloader_batches(tmp_path):
    root = make_folder(tmp_path / 'data', PosedImageFolder, names=[f'{i:02d}' for i in range(7)])
    dataset = PosedImageFolder(dataset_path=root, img_size=IMG)
    loader, sampler = build_dataloader(dataset, batch_size=3, seed=1)
    batches = list(loader)
    assert len(batches) == 2  # 7 images, batch 3, last partial batch dropped
    images, poses = batches[0]
    assert images.shape == (3, 3, IMG, IMG) and poses.shape == (3, 2)
    assert loader.num_workers == 0  # tiny dataset -> no workers
    assert not loader.pin_memory or torch.cuda.is_available()
    # same seed and epoch -> same order; set_epoch reshuffles
    assert list(sampler) == list(build_dataloader(dataset, batch_size=3, seed=1)[1])
    order = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != order


def test_sampler_splits_over_two_ranks(tmp_path):
    root = make_folder(tmp_path / 'data', CATS, names=[f'{i:02d}' for i in range(9)])
    dataset = CATS(dataset_path=root, img_size=IMG)
    shares = [list(build_dataloader(dataset, batch_size=2, rank=r, world_size=2, seed=4)[1]) for r in range(2)]
    assert len(shares[0]) == len(shares[1]) == 4  # 9 // 2, the remainder dropped
    assert not set(shares[0]) & set(shares[1])
    loader, _ = build_dataloader(dataset, batch_size=2, rank=1, world_size=2, seed=4)
    assert len(list(loader)) == 2


def test_dataloader_with_workers(tmp_path):
    root = make_folder(tmp_path / 'data', CARLA, names=[f'{i:02d}' for i in range(8)])
    dataset = CARLA(dataset_path=root, img_size=IMG)

    def flip_pattern(epoch):
        loader, _ = build_dataloader(dataset, batch_size=2, num_workers=1, seed=2)
        begin_epoch(loader, epoch)
        return torch.cat([images[:, 0, 0, 0] for images, _ in loader])

    pattern = flip_pattern(epoch=3)  # red at the top-left pixel: -1 plain, 1 flipped
    assert set(pattern.tolist()) <= {-1.0, 1.0}
    assert torch.equal(pattern, flip_pattern(epoch=3))  # an epoch's flips depend on (seed, epoch) only
    assert not torch.equal(pattern, flip_pattern(epoch=4))


def test_dataloader_too_small(tmp_path):
    root = make_folder(tmp_path / 'data', CARLA)
    dataset = CARLA(dataset_path=root, img_size=IMG)
    with pytest.raises(DatasetError, match='fewer than batch_size'):
        build_dataloader(dataset, batch_size=3, world_size=2)
