"""Posed image datasets, their loader, the pose file readers, and EG3D dataset.json import/export."""
from datasets.datasets import (
    CARLA,
    CATS,
    DATASETS,
    FFHQ,
    DatasetError,
    PosedImageDataset,
    PosedImageFolder,
    begin_epoch,
    build_dataloader,
    build_dataset,
    training_pixels,
)
from datasets.eg3d import dataset_focal, export_eg3d, import_eg3d
from datasets.poses import (
    read_extrinsics_npy,
    read_pose,
    read_pose_npy,
    transform_matrix_to_camera_pos,
)
