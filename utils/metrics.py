"""FID, KID and Inception Score between a folder of generated and a folder of real images.

Two backends:
- torch-fidelity's `calculate_metrics` with its defaults (the released evaluation): FID, KID
  (100 subsets of 1000, polynomial kernel of degree 3, gamma 1 / feature size, coef0 1) and IS
  (10 splits, on the generated images);
- pytorch-fid (FID only), for comparison with numbers reported that way.
The Inception weights come from utils/inception.py. Results use short keys: 'fid', 'kid_mean',
'kid_std', 'is_mean', 'is_std'.
"""
import os

import torch_fidelity

from utils.inception import POOL3_DIM

KID_SUBSET_SIZE = 1000          # torch-fidelity's default KID subset size
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')  # what torch-fidelity reads from a folder (top level)
TORCH_FIDELITY_KEYS = {         # torch-fidelity result name -> our key
    torch_fidelity.KEY_METRIC_FID: 'fid',
    torch_fidelity.KEY_METRIC_KID_MEAN: 'kid_mean',
    torch_fidelity.KEY_METRIC_KID_STD: 'kid_std',
    torch_fidelity.KEY_METRIC_ISC_MEAN: 'is_mean',
    torch_fidelity.KEY_METRIC_ISC_STD: 'is_std',
}


def list_images(folder):
    """Sorted image paths directly inside `folder` (sub-folders are ignored, as torch-fidelity does)."""
    return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                  if name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, name)))


def kid_subset_size(num_fake, num_real):
    """KID subset size for these counts and a note when it is below the standard 1000.

    torch-fidelity refuses KID with fewer than `kid_subset_size` images per side. With fewer, we
    use all the images of the smaller side per subset (a smaller-sample, noisier KID that is not
    comparable with published numbers) and say so.
    Returns (size, note or None).
    """
    size = min(KID_SUBSET_SIZE, num_fake, num_real)
    if size == KID_SUBSET_SIZE:
        return size, None
    return size, (f"KID subset size reduced from {KID_SUBSET_SIZE} to {size} (only {num_fake} generated / "
                  f"{num_real} real images): not comparable with published KID")


def torch_fidelity_metrics(fake_dir, real_dir, metrics, extractor_kwargs, cuda=False, batch_size=64,
                           real_cache_name=None, cache_dir=None, verbose=True):
    """Run torch_fidelity.calculate_metrics on two image folders.

    Args:
        fake_dir: generated images (input1; IS is computed on them).
        real_dir: real images (input2).
        metrics: subset of {'fid', 'kid', 'is'}.
        extractor_kwargs: 'feature_extractor' and 'feature_extractor_weights_path'
            (utils.inception.torch_fidelity_extractor_kwargs).
        cuda: run the extractor on the GPU.
        real_cache_name / cache_dir: when both given, the real images' features and FID
            statistics are cached under this name in this folder (torch-fidelity's cache).
    Returns:
        (results dict with our short keys, list of notes).
    """
    unknown = set(metrics) - {'fid', 'kid', 'is'}
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; torch-fidelity computes fid, kid, is")
    num_fake, num_real = len(list_images(fake_dir)), len(list_images(real_dir))
    if min(num_fake, num_real) < 2:
        raise ValueError(f"need at least 2 images per side, found {num_fake} in '{fake_dir}' and {num_real} "
                         f"in '{real_dir}'; raise --num_images / --num_real_images")
    notes = []
    kwargs = dict(input1=fake_dir, input2=real_dir, fid='fid' in metrics, kid='kid' in metrics,
                  isc='is' in metrics, cuda=cuda, batch_size=batch_size, verbose=verbose,
                  cache=bool(real_cache_name and cache_dir), **extractor_kwargs)
    if kwargs['cache']:
        kwargs.update(input2_cache_name=real_cache_name, cache_root=cache_dir)
    if 'kid' in metrics:
        kwargs['kid_subset_size'], note = kid_subset_size(num_fake, num_real)
        if note:
            notes.append(note)
    raw = torch_fidelity.calculate_metrics(**kwargs)
    results = {TORCH_FIDELITY_KEYS[key]: float(value) for key, value in raw.items() if key in TORCH_FIDELITY_KEYS}
    return results, notes


def pytorch_fid_distance(fake_dir, real_dir, model, device, batch_size=50, num_workers=0, dims=POOL3_DIM):
    """FID with pytorch-fid's own pipeline (its resize and statistics) and the given network.

    model: pytorch_fid InceptionV3 returning pool3 (utils.inception.build_pytorch_fid_model), or
        any module mapping [B, 3, H, W] in [0, 1] to a list whose first item is [B, dims, 1, 1].
    """
    from pytorch_fid.fid_score import calculate_activation_statistics, calculate_frechet_distance
    statistics = []
    for folder in (fake_dir, real_dir):
        files = list_images(folder)
        if len(files) < 2:
            raise ValueError(f"need at least 2 images in '{folder}', found {len(files)}")
        statistics.append(calculate_activation_statistics(files, model, min(batch_size, len(files)), dims,
                                                          device, num_workers))
    (mu_fake, sigma_fake), (mu_real, sigma_real) = statistics
    return float(calculate_frechet_distance(mu_fake, sigma_fake, mu_real, sigma_real))
