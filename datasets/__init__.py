"""Posed image datasets, their loader, and the pose file readers."""
from datasets.datasets import (
    CARLA, CATS, DATASETS, FFHQ, DatasetError, PosedImageDataset, PosedImageFolder,
    build_dataloader, build_dataset,
)
from datasets.poses import read_extrinsics_npy, read_pose, read_pose_npy, transform_matrix_to_camera_pos
