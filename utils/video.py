"""uint8 frames -> looping GIF or H.264 MP4, both written atomically."""
import errno

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np

from utils.files import atomic_path

ANIMATION_FPS = 15                # GIF / MP4 frame rate (released: 15)


def write_gif(frames, path, fps=ANIMATION_FPS):
    """uint8 frames [F, H, W(, 3)] -> looping GIF at `fps`, atomically."""
    with atomic_path(path) as tmp_path:
        iio.imwrite(tmp_path, np.stack(frames), extension='.gif', duration=1000 / fps, loop=0)


def write_mp4(frames, path, fps=ANIMATION_FPS):
    """uint8 frames [F, H, W, 3] -> H.264 MP4 (yuv420p) at `fps` via imageio-ffmpeg, atomically."""
    height, width = frames[0].shape[:2]
    with atomic_path(path) as tmp_path:
        writer = imageio_ffmpeg.write_frames(
            tmp_path, (width, height), fps=fps, codec='libx264', pix_fmt_in='rgb24', pix_fmt_out='yuv420p',
            macro_block_size=2, ffmpeg_log_level='error')
        writer.send(None)  # start the encoder
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()  # does not report ffmpeg's exit status: count what the file holds instead
        try:
            written, _ = imageio_ffmpeg.count_frames_and_secs(tmp_path)
        except RuntimeError:
            written = 0
        if written != len(frames):
            raise OSError(errno.EIO, f'ffmpeg wrote {written} of {len(frames)} frames', path)
