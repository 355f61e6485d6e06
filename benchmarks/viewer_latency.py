"""Latency of the browser viewer on a CPU: how soon the picture follows a camera move.

    python benchmarks/viewer_latency.py                              # demo model, 64 px, square canvas
    python benchmarks/viewer_latency.py --rows 64 --aspect 1.78      # a 16:9 canvas (64 x 114 px)

Runs the viewer's own pipeline without a browser: browser/frames.FrameRenderer renders
ViewRequests in a browser/render_loop.LatestRenderLoop (preview at half resolution while the
camera moves, the full picture once it rests), and each published frame is PNG-encoded as it is
for the browser. Reported:
- render: seconds per frame at full and preview resolution (median of --repeats);
- drag: the camera turns at --drag_speed rad/s with a new camera every 1/60 s (a browser's frame
  rate) for --drag_seconds. For every camera, the delay until a frame of that camera or a newer one
  is published (median, 90th percentile, max), and the frames published per second;
- rest: after the last camera of the drag, the delay until its full-resolution frame;
- single move: from a camera at rest, one move: the delay until its preview and its full frame.
The websocket hop to a browser on the same machine adds about a millisecond (not measured here).
"""
import argparse
import io
import math
import os
import statistics
import sys
import threading
import time

import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from browser import views  # noqa: E402
from browser.frames import FrameRenderer, Subject, ViewRequest, preview_of  # noqa: E402
from browser.render_loop import DEFAULT_REST_SECONDS, LatestRenderLoop  # noqa: E402
from checkpoints.loading import load_generator  # noqa: E402
from generators.renderer import chunk_rays_for  # noqa: E402
from geometry.trajectories import camera_family  # noqa: E402

BROWSER_FPS = 60           # camera messages per second while dragging
PERCENTILE = 0.9           # the reported upper percentile
SETTLE_SECONDS = 1.0       # pause between the phases, so one phase's renders do not spill into the next
PSI = 0.7


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--generator_file', default=os.path.join(ROOT, 'demo', 'synthetic_demo.pt'))
    parser.add_argument('--config', default=None, help='config of a plain state_dict')
    parser.add_argument('--rows', type=int, default=64, help='picture height in pixels')
    parser.add_argument('--aspect', type=float, default=1.0, help='canvas width / height')
    parser.add_argument('--threads', type=int, default=2, help='torch CPU threads')
    parser.add_argument('--chunk_rays', type=int, default=None, help="rays per render chunk (default: the CPU's)")
    parser.add_argument('--repeats', type=int, default=7, help='timed renders per resolution')
    parser.add_argument('--drag_seconds', type=float, default=4.0, help='length of the simulated drag')
    parser.add_argument('--drag_speed', type=float, default=1.0, help='camera turn while dragging, rad/s')
    args = parser.parse_args(argv)
    args.chunk_rays = chunk_rays_for('cpu', args.chunk_rays)
    return args


class Recorder:
    """Publishes like the viewer (PNG-encodes the frame) and records (time, request time, rows)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.published = []

    def publish(self, frame, stamped):
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format='PNG')
        with self.lock:
            self.published.append((time.monotonic(), stamped[0], stamped[1].rows))

    def since(self, start):
        with self.lock:
            return [entry for entry in self.published if entry[0] >= start]


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    generator, config = load_generator(args.generator_file, args.config)
    renderer = FrameRenderer(generator, config, chunk_rays=args.chunk_rays)
    family = camera_family(config)
    fov = math.radians(family['fov'])

    def request_at(theta):
        camera = views.browser_camera((family['pitch'], theta), fov, args.aspect)
        return ViewRequest(camera, Subject(0, 1, 0.0, PSI), args.rows, 'rgb', family['lock_view_dependence'])

    # Render times, measured in a thread as the viewer renders (under load, renders in the main
    # thread were 3-5x slower on the 2-core machine: torch's main-thread OpenMP team stalls).
    full = request_at(math.pi / 2)
    preview = preview_of(full) or full
    timings = {}

    def time_renders():
        renderer.frame(full)  # warm-up
        for name, request in (('full', full), ('preview', preview)):
            seconds = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                renderer.frame(request)
                seconds.append(time.perf_counter() - start)
            timings[name] = statistics.median(seconds)

    timer = threading.Thread(target=time_renders)
    timer.start()
    timer.join()
    grid = views.view_grid(fov, args.aspect, args.rows)
    print(f'{args.generator_file}: {grid.rows} x {grid.cols} px (preview {preview.rows} rows), '
          f'{args.threads} threads, chunk {args.chunk_rays} rays, rest after {DEFAULT_REST_SECONDS} s')
    print(f'render   full {timings["full"]:.3f} s   preview {timings["preview"]:.3f} s   (median of {args.repeats})')

    # The loop renders (request time, request) pairs so every frame knows how old its camera is.
    recorder = Recorder()
    loop = LatestRenderLoop(lambda stamped: renderer.frame(stamped[1]), recorder.publish,
                            lambda stamped: (stamped[0], preview_of(stamped[1])) if preview_of(stamped[1]) else None)
    try:
        # Drag: a camera every 1/60 s.
        sent = []
        start = time.monotonic()
        step = 1 / BROWSER_FPS
        for index in range(int(args.drag_seconds * BROWSER_FPS)):
            time.sleep(max(0.0, start + index * step - time.monotonic()))
            stamp = time.monotonic()
            loop.request((stamp, request_at(math.pi / 2 + args.drag_speed * (stamp - start))))
            sent.append(stamp)
        drag_end = time.monotonic()
        time.sleep(DEFAULT_REST_SECONDS + 2 * timings['full'] + SETTLE_SECONDS)
        frames = recorder.since(start)
        delays = []
        for stamp in sent:
            shown = [published for published, camera_time, _ in frames if camera_time >= stamp]
            if shown:
                delays.append(min(shown) - stamp)
        during = [entry for entry in frames if entry[0] <= drag_end]
        refined = [published for published, camera_time, rows in frames
                   if camera_time == sent[-1] and rows == args.rows]
        print(f'drag     camera -> frame: median {statistics.median(delays):.3f} s, '
              f'p{round(PERCENTILE * 100)} {percentile(delays, PERCENTILE):.3f} s, max {max(delays):.3f} s '
              f'({len(sent)} cameras, {len(during) / (drag_end - start):.1f} frames/s)')
        print(f'rest     last camera -> full frame: {refined[0] - sent[-1]:.3f} s')

        # One move from rest.
        stamp = time.monotonic()
        loop.request((stamp, request_at(math.pi / 2 + 0.3)))
        time.sleep(DEFAULT_REST_SECONDS + 2 * timings['full'] + SETTLE_SECONDS)
        move = [(published - stamp, rows) for published, camera_time, rows in recorder.since(stamp)]
        first, last = move[0], move[-1]
        print(f'one move camera -> first frame ({first[1]} rows): {first[0]:.3f} s, '
              f'-> full frame ({last[1]} rows): {last[0]:.3f} s')
    finally:
        loop.stop()


if __name__ == '__main__':
    main()
