"""Our visible "AI-generated" mark for rendered images (not the released logo).

The mark is white text on a half-transparent dark box, drawn once with PIL's default font,
scaled to a fraction of the image width and placed in the bottom-right corner. It is blended
before the 8-bit encoding (docs/design.md §9): x' = x·(1 - a) + a·rgb with x = img·0.5 + 0.5. We apply the
same blend in the generator's [-1, 1] range, img' = img·(1 - a) + a·(2·rgb - 1), which is the
identical formula and leaves every pixel outside the mark (a = 0) bit-for-bit unchanged.
"""
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

WATERMARK_TEXT = 'AI-generated'
DRAW_FONT_SIZE = 32      # font size of the drawing before it is scaled to the image
DRAW_PADDING = 6         # box padding around the text at drawing size, pixels
BOX_OPACITY = 0.5        # alpha of the dark box behind the text (keeps it readable on white)
WIDTH_FRACTION = 0.3     # mark width as a fraction of the image width
MARGIN_FRACTION = 0.02   # gap between the mark and the image border, fraction of the width


def make_watermark(height, width):
    """Draw the mark for an image of height x width.

    Returns:
        alpha [1, H, W] and color [3, H, W], float32 tensors in [0, 1]; alpha is exactly 0
        outside the bottom-right mark.
    """
    mark = _draw_mark()
    mark_width = max(1, round(width * WIDTH_FRACTION))
    mark_height = max(1, round(mark_width * mark.height / mark.width))
    mark = mark.resize((mark_width, mark_height), Image.LANCZOS)  # RGBA resizes premultiplied
    rgba = np.asarray(mark, dtype=np.float32) / 255.0             # [h, w, 4]

    margin = round(width * MARGIN_FRACTION)
    top = max(0, height - margin - mark_height)
    left = max(0, width - margin - mark_width)
    h, w = min(mark_height, height - top), min(mark_width, width - left)
    alpha = torch.zeros(1, height, width)
    color = torch.zeros(3, height, width)
    alpha[0, top:top + h, left:left + w] = torch.from_numpy(rgba[:h, :w, 3].copy())
    color[:, top:top + h, left:left + w] = torch.from_numpy(rgba[:h, :w, :3].copy()).permute(2, 0, 1)
    return alpha, color


def apply_watermark(img, watermark):
    """Blend the mark into img [..., 3, H, W] (values nominally in [-1, 1]); returns a new tensor.

    watermark: (alpha [1, H, W], color [3, H, W]) from make_watermark.
    """
    alpha, color = (t.to(device=img.device, dtype=img.dtype) for t in watermark)
    return img * (1 - alpha) + alpha * (color * 2 - 1)


def _draw_mark():
    """The mark at drawing size: an RGBA image of white text on a half-transparent dark box."""
    font = ImageFont.load_default(size=DRAW_FONT_SIZE)
    probe = ImageDraw.Draw(Image.new('RGBA', (1, 1)))
    left, top, right, bottom = probe.textbbox((0, 0), WATERMARK_TEXT, font=font)
    size = (right - left + 2 * DRAW_PADDING, bottom - top + 2 * DRAW_PADDING)
    mark = Image.new('RGBA', size, (0, 0, 0, round(255 * BOX_OPACITY)))
    draw = ImageDraw.Draw(mark)
    draw.text((DRAW_PADDING - left, DRAW_PADDING - top), WATERMARK_TEXT, font=font, fill=(255, 255, 255, 255))
    return mark
