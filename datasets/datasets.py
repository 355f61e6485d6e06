"""Posed image folders (docs/design.md §7) and the one function that makes their DataLoader.

Every dataset reads a preprocessed folder::

    <root>/<name>.png|.jpg          the images (any size; resized here)
    <root>/poses/<name><suffix>     one pose file per image, suffix per dataset class

and yields (image [3, N, N] float32 in [-1, 1], camera_pos [2] float32 = [phi, theta]).
Images are resized to N with Lanczos and flipped left-right with probability 0.5; a flipped
image gets the mirrored pose (the pose reader's `flip=True`).

Flips draw from torch's global RNG. DataLoader workers seed it per worker from the loader's
base seed, and `build_dataloader` gives the loader a generator seeded from (seed, rank), so
with workers the flips repeat for the same seed; without workers they follow the main
process's RNG, which repeats under torch.manual_seed.
"""
import os

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from datasets.poses import read_extrinsics_npy, read_pose, read_pose_npy
from utils.cli import UserError, one_line
from utils.images import PIXEL_MAX
from utils.signals import ignore_stop_signals

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')  # file suffixes read as images (case-insensitive)
POSE_FOLDER = 'poses'                          # pose files live in <root>/poses/
MAX_DEFAULT_WORKERS = 4                        # default loader workers on large datasets
TINY_DATASET_SIZE = 1000                       # below this many images the loader uses no workers (and the
                                               # start-up check shows no progress bar)
LISTED_BAD_FILES = 5                           # bad files named in the start-up error (all are counted)


class DatasetError(UserError):
    """A dataset folder or file problem; the message names the path and the fix in one line."""


def training_pixels(image, img_size):
    """A PIL RGB image as training sees it: resized to img_size (LANCZOS), [3, N, N] float32 in [-1, 1]."""
    image = image.resize((img_size, img_size), Image.Resampling.LANCZOS)
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)  # [H, W, 3] -> [3, H, W]
    return (pixels.float() / PIXEL_MAX - 0.5) / 0.5


class PosedImageDataset(Dataset):
    """Base class: a sorted folder of images with one pose file per image.

    Subclasses set POSE_SUFFIX (pose file = <root>/poses/<image stem><POSE_SUFFIX>),
    CATEGORY (the preprocess_dataset.py category named in error hints) and implement
    `read_camera_pos`.

    Args:
        dataset_path: the preprocessed folder (root).
        img_size: output resolution N.
        real_pos: read the pose files; when False they are not needed and camera_pos is zeros.
        flip_probability: chance of a left-right flip per item (released: 0.5).

    Raises:
        DatasetError: at construction, for a missing folder, a folder without images, or bad
            files: images that are empty or whose header cannot be read, and (real_pos) missing,
            unreadable or non-finite pose files — all of them counted in one message. An image
            whose pixel data is corrupt behind a valid header is found when it is loaded.
    """

    POSE_SUFFIX = None
    CATEGORY = None

    def __init__(self, dataset_path, img_size, real_pos=True, flip_probability=0.5):
        super().__init__()
        self.root = os.fspath(dataset_path)
        self.img_size = int(img_size)
        self.real_pos = real_pos
        self.flip_probability = flip_probability
        if self.img_size < 1:
            raise ValueError(f"img_size must be positive, got {img_size}")
        if not 0.0 <= flip_probability <= 1.0:
            raise ValueError(f"flip_probability must be in [0, 1], got {flip_probability}")
        if not os.path.isdir(self.root):
            raise DatasetError(f"dataset folder '{self.root}' not found; {self._create_hint()}")
        self.image_paths = [
            os.path.join(self.root, name) for name in sorted(os.listdir(self.root))
            if name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(self.root, name))
        ]
        if not self.image_paths:
            raise DatasetError(f"dataset folder '{self.root}' has no .png/.jpg images; {self._create_hint()}")
        if self.real_pos:
            self._check_pose_files()
        self._check_files()

    def _create_hint(self):
        """One-line fix for a missing or empty dataset folder."""
        return (f"create it with `python preprocess_dataset.py --raw_dataset_path=./raw_data/{self.CATEGORY} "
                f"--cate={self.CATEGORY} --output_dir {self.root}`, or pass the preprocessed folder with --data_dir")

    def pose_path(self, index):
        """Path of the pose file of image `index`."""
        stem = os.path.splitext(os.path.basename(self.image_paths[index]))[0]
        return os.path.join(self.root, POSE_FOLDER, stem + self.POSE_SUFFIX)

    def _check_pose_files(self):
        """Raise DatasetError naming the first image whose pose file is missing."""
        pose_folder = os.path.join(self.root, POSE_FOLDER)
        present = set(os.listdir(pose_folder)) if os.path.isdir(pose_folder) else set()
        missing = [i for i in range(len(self)) if os.path.basename(self.pose_path(i)) not in present]
        if missing:
            raise DatasetError(
                f"image '{self.image_paths[missing[0]]}' has no pose file '{self.pose_path(missing[0])}' "
                f"({len(missing)} of {len(self)} images lack one); re-run preprocess_dataset.py "
                f"or set real_pos=False")

    def read_camera_pos(self, pose_path, flip):
        """Read one pose file -> camera_pos [2]; `flip` mirrors it."""
        raise NotImplementedError

    def camera_pos(self, index, flip):
        """camera_pos [2] of image `index`; DatasetError (one line, naming the file) if the pose
        file cannot be parsed or holds NaN / inf."""
        path = self.pose_path(index)
        try:
            camera_pos = self.read_camera_pos(path, flip)
        except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
            raise DatasetError(f"pose file '{path}' cannot be read ({one_line(error)}); "
                               f"re-run preprocess_dataset.py") from None
        if not torch.isfinite(camera_pos).all():
            raise DatasetError(f"pose file '{path}' holds a non-finite pose; re-run preprocess_dataset.py")
        return camera_pos

    def _check_files(self):
        """Raise one DatasetError counting every bad image header and pose file (cheap: headers only)."""
        problems = []
        indices = tqdm(range(len(self)), desc='checking dataset', leave=False,
                       disable=len(self) < TINY_DATASET_SIZE)
        for index in indices:
            problem = image_header_problem(self.image_paths[index])
            if problem:
                problems.append(f"'{self.image_paths[index]}' ({problem})")
            if self.real_pos:
                try:
                    self.camera_pos(index, flip=False)
                except DatasetError as error:
                    problems.append(str(error).split('; ')[0])
        if problems:
            listed = '; '.join(problems[:LISTED_BAD_FILES])
            more = f' and {len(problems) - LISTED_BAD_FILES} more' if len(problems) > LISTED_BAD_FILES else ''
            raise DatasetError(f"{len(problems)} bad files in '{self.root}': {listed}{more}; "
                               f"delete or replace them (or re-run preprocess_dataset.py)")

    def load_image(self, index):
        """Image `index` resized to [3, N, N] float32 in [-1, 1] (not flipped)."""
        path = self.image_paths[index]
        try:
            with Image.open(path) as image:
                image = image.convert('RGB')  # decodes the whole file; an alpha channel is dropped
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:  # PIL: bad chunks -> SyntaxError
            raise DatasetError(f"cannot read image '{path}' ({error}); replace or delete the file") from error
        return training_pixels(image, self.img_size)

    def __len__(self):
        return len(self.image_paths)

    def __getitem__(self, index):
        """Return (image [3, N, N] in [-1, 1], camera_pos [2] = [phi, theta])."""
        image = self.load_image(index)
        flip = bool(torch.rand(()) < self.flip_probability)
        if flip:
            image = torch.flip(image, dims=[2])  # mirror the width axis
        if self.real_pos:
            camera_pos = self.camera_pos(index, flip)
        else:
            camera_pos = torch.zeros(2)
        return image, camera_pos


def image_header_problem(path):
    """Why the image at `path` cannot be used, judged from its size and header; None if it looks fine."""
    if os.path.getsize(path) == 0:
        return 'empty file'
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        return f'not a readable image: {str(error).splitlines()[0]}'
    if width < 1 or height < 1:
        return 'image of size 0'
    return None


class FFHQ(PosedImageDataset):
    """FFHQ faces: poses/<name>.mat with Deep3DFaceRecon angles (key 'angle')."""

    POSE_SUFFIX = '.mat'
    CATEGORY = 'ffhq'

    def read_camera_pos(self, pose_path, flip):
        return read_pose(pose_path, flip=flip)


class CATS(PosedImageDataset):
    """Cat faces: poses/<name>_pose.npy = [pitch, yaw] from preprocessing."""

    POSE_SUFFIX = '_pose.npy'
    CATEGORY = 'cats'

    def read_camera_pos(self, pose_path, flip):
        return read_pose_npy(pose_path, flip=flip)


class PosedImageFolder(PosedImageDataset):
    """Generic posed images: poses/<name>_extrinsics.npy camera-to-world matrices (CARLA layout).

    Used by the built-in synthetic dataset (data/synthetic).
    """

    POSE_SUFFIX = '_extrinsics.npy'
    CATEGORY = 'synthetic'

    def read_camera_pos(self, pose_path, flip):
        return read_extrinsics_npy(pose_path, flip=flip)

    def _create_hint(self):
        return (f"create it with `python preprocess_dataset.py --cate synthetic --config <the config you train> "
                f"--output_dir {self.root}` (the built-in synthetic cars) or `--cate posed --raw_dataset_path "
                f"<your posed images> --output_dir {self.root}`, or pass the preprocessed folder with --data_dir")


class CARLA(PosedImageFolder):
    """CARLA cars: poses/<name>_extrinsics.npy camera-to-world matrices."""

    CATEGORY = 'carla'
    _create_hint = PosedImageDataset._create_hint  # CARLA has a raw data set to preprocess


DATASETS = {
    'FFHQ': FFHQ,
    'CATS': CATS,
    'CARLA': CARLA,
    'PosedImageFolder': PosedImageFolder,
}


def build_dataset(config, data_dir=None):
    """Build the dataset named in config['dataset'] = {'class': name, 'kwargs': {...}}.

    Images are resized to global.img_size; `data_dir`, when given, replaces kwargs['dataset_path'].
    The config is not changed.
    """
    section = config['dataset']
    name = section['class']
    if name not in DATASETS:
        raise KeyError(f"unknown dataset class '{name}'; valid names: {', '.join(DATASETS)}")
    kwargs = {'img_size': config['global']['img_size'], **section.get('kwargs', {})}
    if data_dir is not None:
        kwargs['dataset_path'] = data_dir
    return DATASETS[name](**kwargs)


def default_num_workers(dataset):
    """Loader workers when not given: none for tiny datasets (< 1000 images, where worker
    start-up costs more than it saves), else min(4, CPU count)."""
    if len(dataset) < TINY_DATASET_SIZE:
        return 0
    return min(MAX_DEFAULT_WORKERS, os.cpu_count() or 1)


def build_dataloader(dataset, batch_size, rank=0, world_size=1, shuffle=True, seed=0, num_workers=None):
    """DataLoader over this rank's share of `dataset`; all loader settings live here.

    Each of the `world_size` ranks sees a disjoint len(dataset) // world_size images (the
    remainder is dropped), in batches of `batch_size` (the last partial batch is dropped).
    Call `begin_epoch(loader, epoch)` before each epoch: it reshuffles and reseeds the workers.

    Returns:
        (loader, sampler): the DataLoader and its DistributedSampler.
    """
    if len(dataset) // world_size < batch_size:
        raise DatasetError(f"dataset '{getattr(dataset, 'root', dataset)}' has {len(dataset)} images, fewer than "
                           f"batch_size * world_size = {batch_size * world_size}; use a smaller batch or more images")
    if num_workers is None:
        num_workers = default_num_workers(dataset)
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle,
                                 seed=seed, drop_last=True)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=True,
        persistent_workers=False,  # workers restart each epoch, seeded by begin_epoch (exact resume)
        generator=torch.Generator(),
        worker_init_fn=_leave_stop_signals_to_the_main_process,
    )
    loader.rank_seed = seed * world_size + rank  # worker seeds (flips) differ per rank
    return loader, sampler


def _leave_stop_signals_to_the_main_process(worker_id):
    """Workers ignore Ctrl-C / SIGTERM (a terminal or a cluster sends them to every process): the
    main process decides, e.g. training saves a checkpoint first, then shuts its workers down."""
    ignore_stop_signals()


def begin_epoch(loader, epoch):
    """Reshuffle for `epoch` and seed the epoch's worker draws (flips) from (rank seed, epoch).

    A run resumed mid-epoch therefore draws what the uninterrupted run drew, with or without
    worker processes (without workers the flips come from the training process's own RNG, whose
    state the checkpoint holds).
    """
    loader.sampler.set_epoch(epoch)
    epoch_seed = np.random.SeedSequence([loader.rank_seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    loader.generator.manual_seed(int(epoch_seed))
