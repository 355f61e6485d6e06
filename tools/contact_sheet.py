"""Contact sheet of rendered frames: one row per seed, evenly spaced frames of its trajectory.

    python -m tools.contact_sheet --frames_dir outputs/demo --seeds 0-5 --columns 6 \
        --output outputs/demo/demo_grid.png
    python -m tools.contact_sheet ... --first_frames 16   # the first half of a 30-frame sweep

Reads the `grid_<seed>_<i>.png` frames written by render_multiview_images.py.
"""
import utils.openmp  # noqa: F401, I001  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import argparse
import os
import re
import sys

from PIL import Image

from utils import cli
from utils.files import atomic_path
from utils.seeds import parse_seeds

GAP = 2  # white pixels between tiles


def frame_paths(frames_dir, seed):
    """Frame files of `seed` in frame order; a clear error when there are none."""
    pattern = re.compile(rf'^grid_{seed}_(\d+)\.png$')
    numbered = sorted((int(m.group(1)), name) for name in os.listdir(frames_dir)
                      if (m := pattern.match(name)))
    if not numbered:
        raise FileNotFoundError(f"no grid_{seed}_<i>.png frames in '{frames_dir}'; "
                                f"render them with render_multiview_images.py first")
    return [os.path.join(frames_dir, name) for _, name in numbered]


def contact_sheet(frames_dir, seeds, columns, first_frames=None):
    """PIL image: row r = seed r, column c = frame round(c * F / columns) of that seed.

    F is the seed's frame count, or `first_frames` when given (only frames 0..first_frames-1 are used).
    """
    rows = []
    for seed in seeds:
        found = frame_paths(frames_dir, seed)
        paths = found[:first_frames]
        if len(paths) < columns:
            fix = ('raise --first_frames or lower --columns' if len(paths) < len(found)
                   else 'lower --columns (or render more frames)')
            raise ValueError(f"seed {seed} has {len(paths)} frame(s) to pick from in '{frames_dir}', fewer than the "
                             f"{columns} columns asked for; {fix}")
        picks = [paths[round(c * len(paths) / columns)] for c in range(columns)]
        rows.append([Image.open(path).convert('RGB') for path in picks])
    tile_w, tile_h = rows[0][0].size
    for seed, row in zip(seeds, rows):
        sizes = {tile.size for tile in row}
        if sizes != {(tile_w, tile_h)}:
            raise ValueError(f"frames of seed {seed} are {' and '.join(f'{w}x{h}' for w, h in sorted(sizes))} px, those "
                             f"of seed {seeds[0]} {tile_w}x{tile_h}; re-render them at one --img_size")
    sheet = Image.new('RGB', (columns * (tile_w + GAP) - GAP, len(rows) * (tile_h + GAP) - GAP), 'white')
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            sheet.paste(tile, (c * (tile_w + GAP), r * (tile_h + GAP)))
    return sheet


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--frames_dir', required=True, help='folder with grid_<seed>_<i>.png frames')
    parser.add_argument('--seeds', required=True, help="seeds (rows): '0-5' or '0,3,7'")
    parser.add_argument('--columns', type=int, default=6, help='frames per row, evenly spaced over the trajectory')
    parser.add_argument('--first_frames', type=int, default=None,
                        help='use only the first K frames of each seed (e.g. one way of a sweep; default: all)')
    parser.add_argument('--output', required=True, help='PNG to write')
    args = parser.parse_args(argv)
    if args.columns < 1:
        parser.error(f'--columns must be >= 1, got {args.columns}')
    if args.first_frames is not None and args.first_frames < 1:
        parser.error(f'--first_frames must be >= 1, got {args.first_frames}')
    return cli.run_script(run, args)


def run(args):
    sheet = contact_sheet(args.frames_dir, parse_seeds(args.seeds), args.columns, args.first_frames)
    with atomic_path(args.output) as tmp_path:
        sheet.save(tmp_path, format='PNG')
    print(f'wrote {args.output}')


if __name__ == '__main__':
    sys.exit(main())
