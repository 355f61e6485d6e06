"""Read the image to invert: decode safely, apply the EXIF orientation, scale 16-bit greyscale to
8 bits, composite transparency, align (FFHQ / Cats), resize.

The image must be aligned like the model's training data (preprocess_dataset.py) or come with
its landmarks (`--landmarks`, FFHQ and Cats configs), which apply the same alignment first.
"""
import os

import numpy as np
import torch
from PIL import Image, ImageOps

from datasets.alignment import (
    ALIGNED_SIZE,
    SkipSample,
    align_img_cats,
    align_img_ffhq,
    fit_pose,
    read_cat_landmarks,
    read_ffhq_landmarks,
)
from utils.cli import UserError
from utils.images import PIXEL_MAX

# Alignment per dataset class: (landmark reader, POS category, crop function).
ALIGNMENTS = {
    'FFHQ': (read_ffhq_landmarks, 'ffhq', align_img_ffhq),
    'CATS': (read_cat_landmarks, 'cats', align_img_cats),
}
WHITE, BLACK = (255, 255, 255), (0, 0, 0)
SIXTEEN_BIT_MODES = ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N')  # Pillow's modes of 16-bit greyscale PNGs
SIXTEEN_BIT_MAX = 2 ** 16 - 1
SIXTEEN_TO_EIGHT_BITS = 8   # right shift that keeps the top 8 of 16 bits


def background_colour(config):
    """RGB the renderer shows where nothing is hit: white for white_back configs, else black."""
    return WHITE if config['generator']['renderer']['kwargs'].get('white_back') else BLACK


def check_input_files(path, landmarks_path=None):
    """Raise UserError (one line) unless the image and (when given) the landmark file exist."""
    if not os.path.isfile(path):
        raise UserError(f"image '{path}' not found; pass an existing file with --image")
    if landmarks_path is not None and not os.path.isfile(landmarks_path):
        raise UserError(f"landmark file '{landmarks_path}' not found; pass the photo's lm5p/<name>.txt or "
                        f"<name>.jpg.cat with --landmarks, or drop --landmarks for an aligned image")


def eight_bit(image):
    """A 16-bit greyscale PIL image (SIXTEEN_BIT_MODES) -> 8-bit greyscale ('L'), scaled rather than clipped."""
    levels = np.asarray(image).astype(np.int64).clip(0, SIXTEEN_BIT_MAX) >> SIXTEEN_TO_EIGHT_BITS
    return Image.fromarray(levels.astype(np.uint8))


def read_image(path, background):
    """Decode `path` fully -> PIL RGB image, turned upright by its EXIF orientation; transparency is
    composited onto `background` (RGB), greyscale (8 or 16 bit) and palette images become RGB.
    Raises UserError (one line) when it cannot."""
    check_input_files(path)
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            if image.mode in SIXTEEN_BIT_MODES:
                image = eight_bit(image)
            has_alpha = image.mode in ('RGBA', 'LA', 'PA') or 'transparency' in image.info
            image = image.convert('RGBA') if has_alpha else image.convert('RGB')
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise UserError(f"cannot read image '{path}' ({str(error).splitlines()[0]}); pass a PNG or JPEG") from None
    if image.mode == 'RGBA':
        canvas = Image.new('RGBA', image.size, background + (255,))
        image = Image.alpha_composite(canvas, image).convert('RGB')
    return image


def align(image, landmarks_path, config):
    """Align a raw photo with its landmark file as preprocess_dataset.py does (FFHQ / Cats)."""
    dataset = config['dataset']['class']
    if dataset not in ALIGNMENTS:
        raise UserError(f"--landmarks aligns FFHQ and CATS photos; this config's data ({dataset}) "
                        f"is used as it is: pass an aligned image without --landmarks")
    reader, cate, crop = ALIGNMENTS[dataset]
    try:
        landmarks = reader(landmarks_path, image.size[1])
        pose = fit_pose(landmarks, cate)
    except SkipSample as error:
        raise UserError(f'cannot align the image: {error}') from None
    return crop(image, pose, target_size=ALIGNED_SIZE)


def load_target(path, config, landmarks_path=None):
    """The image at `path` as the model sees it.

    Returns:
        (target [1, 3, N, N] float32 in [-1, 1] at the config's resolution N (Lanczos),
         the (aligned) image as uint8 [S, S, 3] at its own size S).
    Raises UserError for missing or unreadable files, bad landmarks and non-square images (without landmarks).
    """
    check_input_files(path, landmarks_path)
    image = read_image(path, background_colour(config))
    if landmarks_path is not None:
        image = align(image, landmarks_path, config)
    if image.size[0] != image.size[1]:
        raise UserError(f"image '{path}' is {image.size[0]}x{image.size[1]}; an aligned image is square "
                        f"(crop it like the training data, or pass --landmarks for FFHQ / Cats photos)")
    size = config['global']['img_size']
    resized = image.resize((size, size), Image.Resampling.LANCZOS) if image.size[0] != size else image
    pixels = torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1).float()
    target = (pixels / PIXEL_MAX - 0.5) / 0.5
    return target.unsqueeze(0), np.array(image, dtype=np.uint8)
