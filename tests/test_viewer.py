"""viewer.py and browser/: the browser camera as ours (pixel for pixel), the latest-request render loop,
view images, and the real thing in headless Chromium (first render, seed change, drag to orbit, save
buttons, nothing loaded from the internet).

The browser test needs Debian's chromium and chromium-driver (.ci/run installs them); it is
skipped where they are missing. GRAM_WRITE_SCREENSHOT=path makes it save its first screenshot
(docs/viewer_screenshot.png is made that way).
"""
import copy
import io
import math
import os
import shutil
import threading
import time

import numpy as np
import pytest
import torch
from helpers import ROOT, write_inversion
from PIL import Image
from viser import transforms

import viewer
from browser import app as app_module
from browser import views
from browser.frames import FrameRenderer, Subject, ViewRequest, preview_of
from browser.render_loop import LatestRenderLoop
from checkpoints.loading import load_generator
from generators import cameras
from inversion.rendering import render
from utils.images import to_uint8
from utils.seeds import latent_for_seed

DEMO_MODEL = os.path.join(ROOT, 'demo', 'synthetic_demo.pt')
CHROMIUM, CHROMEDRIVER = shutil.which('chromium'), shutil.which('chromedriver')
PAGE_TIMEOUT = 30        # seconds for the page, a frame or a picture change to show up
WINDOW = (1000, 700)     # browser window size, pixels
FRONTAL = (math.pi / 2, math.pi / 2)
MESH_RESOLUTION = 32     # grid of the mesh button in the browser test (small: fast)
NOTICE_FADE_SECONDS = 1  # a closed notification fades out
PICTURE_CHANGE = 8       # mean grey-level change of the canvas centre that counts as a new picture
TUNING_NOISE = 0.01      # stddev of the noise added to the weights stored as an inversion's fine-tuned ones
LATENT_CAMERA = (1.1, 1.9)  # (phi, theta) stored as the inversion's camera: off the home view
ROUNDING_LEVELS = 1      # grey levels by which renders of the same camera may differ (float rounding of the rays)


@pytest.fixture(scope='module')
def demo():
    generator, config = load_generator(DEMO_MODEL)
    return generator, config


def browser_fov_for(grid_fov, rows):
    """The browser fov (radians) whose square picture of `rows` rows is our grid at grid_fov degrees."""
    return 2 * math.atan(math.tan(math.radians(grid_fov) / 2) * rows / (rows - 1))


# ----------------------------------------------------------------------------------- cameras
def test_frontal_browser_camera_is_our_frontal_camera():
    camera = views.BrowserCamera((0.0, 1.0, 0.0, 0.0), (0.0, 0.0, 1.0), 0.6, 1.0)  # R = diag(1, -1, -1)
    expected = cameras.look_at_cam2world(torch.tensor([[0.0, 0.0, 1.0]]))[0]
    assert torch.equal(views.cam2world_from_browser(camera), expected)


@pytest.mark.parametrize('camera_pos', [(1.0, 0.3), (math.pi / 3, math.pi / 2), (2.0, -2.5), (0.4, 3.0)])
def test_browser_camera_round_trip(camera_pos):
    position, look_at, up = views.browser_pose(camera_pos)
    assert look_at == (0.0, 0.0, 0.0) and up == (0.0, 1.0, 0.0)
    assert views.camera_pos_of(position) == pytest.approx(camera_pos, abs=1e-9)
    camera = views.browser_camera(camera_pos, 0.6, 1.0)
    assert camera.position == pytest.approx(position, abs=1e-12)
    opencv = transforms.SO3(np.array(camera.wxyz)).as_matrix()   # viser's axes: x right, y down, z forward
    assert np.allclose(opencv[:, 2], -np.array(position), atol=1e-9)  # looks at the origin
    assert abs(opencv[1, 0]) < 1e-9 and opencv[1, 1] < 0              # no roll: x level, y down
    expected = cameras.look_at_cam2world(torch.tensor([position], dtype=torch.float32))[0]
    assert torch.allclose(views.cam2world_from_browser(camera), expected, atol=1e-6)


def test_view_grid_matches_the_browser_pixels():
    fov = math.radians(30)
    square = views.view_grid(fov, 1.0, 64)
    assert (square.rows, square.cols, square.grid_size, square.first_row, square.first_col) == (64, 64, 64, 0, 0)
    assert math.tan(math.radians(square.fov) / 2) == pytest.approx(math.tan(fov / 2) * 63 / 64)
    wide = views.view_grid(fov, 1.8, 64)   # 115.2 columns -> 116 (the parity of the rows)
    assert (wide.cols, wide.grid_size, wide.first_row, wide.first_col) == (116, 116, 26, 0)
    assert wide.pixel_range == (26 * 116, 90 * 116)
    tall = views.view_grid(fov, 0.5, 63)   # 31.5 columns -> 31 (odd, as the rows)
    assert (tall.cols, tall.grid_size, tall.first_row, tall.first_col) == (31, 63, 0, 16)
    # every grid has the picture's pixel pitch: 2 tan(fov / 2) / rows
    for grid in (square, wide, tall):
        pitch = 2 * math.tan(math.radians(grid.fov) / 2) / (grid.grid_size - 1)
        assert pitch == pytest.approx(2 * math.tan(fov / 2) / grid.rows)
    with pytest.raises(ValueError, match='at least'):
        views.view_grid(fov, 1.0, 1)


def test_ray_range_follows_the_camera_distance():
    assert views.ray_range((0.0, 0.0, 1.0), 0.7, 1.3) == pytest.approx((0.7, 1.3))
    assert views.ray_range((0.0, 2.0, 0.0), 0.7, 1.3) == pytest.approx((1.7, 2.3))
    assert views.ray_range((0.0, 0.0, 0.2), 0.7, 1.3)[0] == views.MIN_RAY_START


# ----------------------------------------------------------------------------------- rendering
def test_frontal_browser_view_is_our_frontal_render_pixel_for_pixel(demo):
    generator, config = demo
    rows, grid_fov, psi = 32, 35.0, 0.7
    camera = views.BrowserCamera((0.0, 1.0, 0.0, 0.0), (0.0, 0.0, 1.0), browser_fov_for(grid_fov, rows), 1.0)
    z = latent_for_seed(3, generator.z_dim, 'cpu')
    ray_start, ray_end = config['camera']['ray_start'], config['camera']['ray_end']
    view = views.render_browser_view(generator, *generator.film_parameters(z, psi), camera, rows, ray_start, ray_end)
    with torch.no_grad():
        exact, _ = generator(z, views.view_grid(camera.fov, 1.0, rows).fov, ray_start, ray_end, img_size=rows,
                             camera_origin=[0.0, 0.0, 1.0], truncation_psi=psi)
        frontal, _ = generator(z, grid_fov, ray_start, ray_end, img_size=rows, camera_pos=FRONTAL, truncation_psi=psi)
    ours = view.rgb.permute(2, 0, 1) * 2 - 1
    assert torch.equal(ours, exact[0])                                   # same rays, same numbers
    assert np.array_equal(views.view_image(view, 'rgb'), to_uint8(frontal[0]))  # the frontal render, pixel for pixel


def test_wide_view_is_the_middle_band_of_the_square_render(demo):
    generator = demo[0]
    film = generator.film_parameters(latent_for_seed(1, generator.z_dim, 'cpu'), 0.7)
    camera = views.browser_camera((1.1, 1.9), math.radians(40), aspect=1.5)
    wide = views.render_browser_view(generator, *film, camera, 16, 0.7, 1.3)
    grid = views.view_grid(camera.fov, camera.aspect, 16)
    square = views.render_view(generator, *film, views.cam2world_from_browser(camera),
                               views.ViewGrid(grid.grid_size, grid.grid_size, grid.grid_size, grid.fov, 0, 0), 0.7, 1.3)
    assert wide.rgb.shape == (16, 24, 3)
    assert torch.allclose(wide.rgb, square.rgb[grid.first_row:grid.first_row + 16], atol=1e-6)
    tall = views.render_browser_view(generator, *film, camera.__class__(camera.wxyz, camera.position, camera.fov, 0.5),
                                     16, 0.7, 1.3)
    assert tall.rgb.shape == (16, 8, 3)


def test_view_images(demo):
    generator = demo[0]
    film = generator.film_parameters(latent_for_seed(0, generator.z_dim, 'cpu'), 0.7)
    camera = views.browser_camera((math.pi / 3, math.pi / 2), math.radians(35), 1.0)
    view = views.render_browser_view(generator, *film, camera, 32, 0.7, 1.3)
    images = {mode: views.view_image(view, mode) for mode in views.VIEW_MODES}
    for image in images.values():
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    centre, corner = (slice(12, 20), slice(12, 20)), (slice(0, 3), slice(0, 3))
    assert images['weight'][centre].mean() > 200 and images['weight'][corner].max() < 30   # the car is opaque
    assert images['depth'][centre].mean() > 60 and images['depth'][corner].max() == 0       # background: black
    with pytest.raises(ValueError, match='unknown view mode'):
        views.view_image(view, 'normals')


def test_frame_renderer_subjects_and_orbit(demo):
    generator, config = demo
    renderer = FrameRenderer(generator, config)
    seed_a, seed_b = (renderer._seed_film(seed, 0.7) for seed in (2, 9))
    for blend, expected in ((0.0, seed_a), (1.0, seed_b)):
        film = renderer.film(Subject(2, 9, blend, 0.7))
        assert all(torch.allclose(a, b) for a, b in zip(film, expected))
    middle = renderer.film(Subject(2, 9, 0.5, 0.7))
    assert torch.allclose(middle[0], (seed_a[0] + seed_b[0]) / 2)
    with pytest.raises(ValueError, match='no latent'):
        renderer.film(Subject(None, 9, 0.0, 0.7))
    loaded = FrameRenderer(generator, config, latent=seed_b).film(Subject(None, 2, 0.0, 0.7))
    assert all(torch.equal(a, b) for a, b in zip(loaded, seed_b))

    request = ViewRequest(views.browser_camera((1.0, 1.5), math.radians(35), aspect=2.0), Subject(2, 9, 0.0, 0.7),
                          32, 'rgb', False)
    assert renderer.frame(request).shape == (32, 64, 3)
    assert preview_of(request).rows == 16 and preview_of(preview_of(request)) is None
    done = []
    frames = renderer.orbit_frames(preview_of(request), 3, True, done.append)
    assert done == [1, 2, 3] and [f.shape for f in frames] == [(16, 16, 3)] * 3
    assert not np.array_equal(frames[0], frames[1])


# ----------------------------------------------------------------------------------- render loop
def test_render_loop_renders_only_the_latest_request_and_refines_at_rest():
    rendered, published = [], []
    lock = threading.Lock()

    def render(request):
        time.sleep(0.05)
        with lock:
            rendered.append(request)
        return request

    def preview(request):
        return ('preview', request[1]) if request[0] == 'full' else None

    loop = LatestRenderLoop(render, lambda frame, request: published.append(frame), preview, rest_seconds=0.2)
    try:
        for index in range(40):          # a drag: a request every 5 ms, ten times faster than a render
            loop.request(('full', index))
            time.sleep(0.005)
        deadline = time.monotonic() + 5
        while (not published or published[-1] != ('full', 39)) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        loop.stop()
    indices = [index for _, index in rendered]
    assert published[-1] == ('full', 39) and loop.latest_request() == ('full', 39)
    assert len(rendered) < 15                       # stale requests were skipped, not queued
    assert indices == sorted(indices)               # never an older request after a newer one
    assert all(kind == 'preview' for kind, _ in rendered[:-1])  # previews while the requests kept coming
    assert [kind for kind, _ in rendered].count('full') == 1


def test_render_loop_reports_errors_and_carries_on():
    errors, published = [], []

    def render(request):
        if request == 'bad':
            raise RuntimeError('out of memory')
        return request

    loop = LatestRenderLoop(render, lambda frame, request: published.append(frame), lambda request: None,
                            rest_seconds=0.0, on_error=errors.append)
    try:
        loop.request('bad')
        deadline = time.monotonic() + 5
        while not errors and time.monotonic() < deadline:
            time.sleep(0.01)
        loop.request('good')
        while not published and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        loop.stop()
    assert errors == ['RuntimeError: out of memory'] and published == ['good']


# ----------------------------------------------------------------------------------- --latent
def test_latent_opens_on_the_inversion_at_its_camera_with_its_weights(tmp_path, demo):
    generator, config = demo
    tuned = copy.deepcopy(generator)
    noise = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in tuned.parameters():
            parameter.add_(TUNING_NOISE * torch.randn(parameter.shape, generator=noise))
        film = generator.film_parameters(latent_for_seed(4, generator.z_dim, 'cpu'), 0.7)
    latent = write_inversion(tmp_path / 'inversion.pt', config, *film, torch.tensor([LATENT_CAMERA]), tuned)
    rows = 32
    app = viewer.start_viewer(viewer.parse_args([
        '--generator_file', DEMO_MODEL, '--latent', latent, '--port', '0', '--output_dir', str(tmp_path),
        '--resolution', str(rows), '--device', 'cpu']))
    try:
        assert views.camera_pos_of(app.home_pose[0]) == pytest.approx(LATENT_CAMERA, abs=1e-6)
        grid_fov = config['camera']['fov']
        camera = views.browser_camera(LATENT_CAMERA, browser_fov_for(grid_fov, rows), 1.0)
        request = app.request_for(camera)
        assert request.subject.seed is None and request.rows == rows  # the page opens on the loaded latent
        frame = app.renderer.frame(request).astype(int)
    finally:
        app.stop()
    camera_settings = {'fov': grid_fov, 'ray_start': config['camera']['ray_start'],
                       'ray_end': config['camera']['ray_end']}
    with torch.no_grad():
        expected, base = (to_uint8(render(weights, *film, torch.tensor([LATENT_CAMERA]), camera_settings, rows)[0])
                          for weights in (tuned, generator))
    assert np.abs(frame - expected).max() <= ROUNDING_LEVELS  # the fine-tuned generator's render at that camera
    assert np.abs(frame - base).mean() > PICTURE_CHANGE       # ... not the base weights'


def test_cli_bad_latent_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / 'garbage.pt').write_bytes(b'not an inversion')
    for extra, message in ((['--latent', str(tmp_path / 'missing.pt')], 'not found'),
                           (['--latent', str(tmp_path / 'garbage.pt')], 'as an inversion file'),
                           (['--latent', str(tmp_path / 'garbage.pt'), '--config', 'SYNTHETIC_demo'], 'drop --config')):
        assert viewer.main(['--generator_file', DEMO_MODEL, '--output_dir', str(tmp_path / 'out')] + extra) == 1
        error = capsys.readouterr().err
        assert error.startswith('error: ') and message in error and error.count('\n') == 1, error
    assert not (tmp_path / 'out').exists()


# ----------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize('extra, message', [
    (['--port', '70000'], '--port must be in'),
    (['--resolution', '8'], '--resolution must be in'),
    (['--psi', '1.5'], '--psi must be in'),
])
def test_cli_bad_values_are_one_line_errors(extra, message, capsys):
    assert viewer.main(['--generator_file', DEMO_MODEL] + extra) == 1
    error = capsys.readouterr().err
    assert error.startswith('error: ') and message in error and error.count('\n') == 1


def test_cli_unusable_output_dir_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / 'taken').write_text('x')
    assert viewer.main(['--generator_file', DEMO_MODEL, '--output_dir', str(tmp_path / 'taken' / 'out')]) == 1
    error = capsys.readouterr().err
    assert error.startswith('error: not a folder: ') and error.count('\n') == 1


def test_cli_missing_generator_file(tmp_path, capsys):
    assert viewer.main(['--generator_file', str(tmp_path / 'missing.pt')]) == 1
    assert 'not found' in capsys.readouterr().err


# ----------------------------------------------------------------------------------- browser
def wait_for(condition, what, timeout=PAGE_TIMEOUT):
    """Poll condition() until it returns something other than None or False; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value is not None and value is not False:
            return value
        time.sleep(0.05)
    raise AssertionError(f'timed out after {timeout} s waiting for {what}')


def screenshot(driver):
    return np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert('RGB')).astype(np.int16)


def centre(picture):
    """The middle of the canvas, where the object is (the controls float on the right)."""
    height, width = picture.shape[:2]
    return picture[int(height * 0.3):int(height * 0.7), int(width * 0.4):int(width * 0.6)]


def full_frame_of(session, app, **subject):
    """The session's latest published request when it is a full-resolution frame of `subject` values."""
    request = session.last_published
    if request is None or request.rows != app.rows.value:
        return None
    return request if all(getattr(request.subject, key) == value for key, value in subject.items()) else None


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason='needs chromium and chromium-driver (apt)')
def test_viewer_in_headless_chromium(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    app = viewer.start_viewer(viewer.parse_args([
        '--generator_file', DEMO_MODEL, '--port', '0', '--output_dir', str(tmp_path), '--device', 'cpu',
        '--mesh_resolution', str(MESH_RESOLUTION)]))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu',
                     f'--window-size={WINDOW[0]},{WINDOW[1]}',
                     '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1'):  # offline: only this machine
        options.add_argument(argument)
    driver = None
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(PAGE_TIMEOUT)
        driver.get(app.url)

        # First render: the home camera, at full resolution; the browser's camera is our camera.
        session = wait_for(lambda: next(iter(app.sessions.values()), None), 'the page to connect')
        home = app.home_pose[0]

        def home_frame(seed):
            request = full_frame_of(session, app, seed=seed)
            return request if request is not None and np.allclose(request.camera.position, home, atol=1e-4) else None

        first = wait_for(lambda: home_frame(0), 'the first full frame')
        expected = cameras.look_at_cam2world(torch.tensor([home], dtype=torch.float32))[0]
        assert torch.allclose(views.cam2world_from_browser(first.camera), expected, atol=1e-4)

        def object_shown():
            shot = screenshot(driver)
            return shot if (np.abs(centre(shot) - 255).sum(axis=-1) > 60).mean() > 0.3 else None

        before = wait_for(object_shown, 'the object on the page')
        height, width = before.shape[:2]
        background = before[int(height * 0.88):int(height * 0.95), int(width * 0.35):int(width * 0.6)]
        assert np.abs(background - 255).max() < 10   # white around the car (SYNTHETIC_demo composites on white)
        if os.environ.get('GRAM_WRITE_SCREENSHOT'):  # without the "software WebGL" notice of headless Chromium
            for close in driver.find_elements(By.CSS_SELECTOR, '.mantine-Notification-closeButton'):
                close.click()
            time.sleep(NOTICE_FADE_SECONDS)
            Image.open(io.BytesIO(driver.get_screenshot_as_png())).save(os.environ['GRAM_WRITE_SCREENSHOT'])

        # Another seed: the picture changes.
        app.seed.value = 7
        wait_for(lambda: full_frame_of(session, app, seed=7), 'the frame of seed 7')
        wait_for(lambda: bool(np.abs(centre(screenshot(driver)) - centre(before)).mean() > PICTURE_CHANGE),
                 'the new seed on the page')

        # Drag to orbit: the camera turns around the object and the render follows.
        canvas = driver.find_element(By.TAG_NAME, 'canvas')
        ActionChains(driver).move_to_element_with_offset(canvas, -200, 150).click_and_hold().move_by_offset(
            120, 0).move_by_offset(120, 0).release().perform()

        def orbited_frame():
            request = full_frame_of(session, app, seed=7)
            turned = request is not None and abs(views.camera_pos_of(request.camera.position)[1] - math.pi / 2) > 0.2
            return request if turned else None

        turned = wait_for(orbited_frame, 'an orbited frame')
        assert views.camera_pos_of(turned.camera.position)[0] == pytest.approx(app.family['pitch'], abs=0.1)  # level

        # The save buttons write a PNG of the picture, an orbit video and a mesh (also shown in the scene).
        saves = (('save frame (PNG)', 'frame_seed7_*.png'), ('save orbit video (MP4)', 'orbit_seed7_*.mp4'),
                 ('extract mesh (PLY)', 'mesh_seed7_*.ply'))
        for label, pattern in saves:
            driver.find_element(By.XPATH, f"//button[contains(., '{label}')]").click()
            wait_for(lambda pattern=pattern: next(iter(tmp_path.glob(pattern)), None), f'{pattern} after {label}')
        frame = np.asarray(Image.open(next(tmp_path.glob('frame_seed7_*.png'))))
        assert frame.shape == (64, views.view_grid(turned.camera.fov, turned.camera.aspect, 64).cols, 3)
        # the app writes the PLY first, then adds the mesh to the scene
        wait_for(lambda: app.server.scene.get_handle_by_name(app_module.MESH_NODE), 'the mesh in the scene')

        # Back to the start view.
        driver.find_element(By.XPATH, "//button[contains(., 'reset camera')]").click()
        wait_for(lambda: home_frame(7), 'a frame from the start view after reset camera')

        # Everything the page loaded came from this machine.
        resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert all(name.startswith((app.url, 'data:', 'blob:')) for name in resources), resources
    finally:
        if driver is not None:
            driver.quit()
        app.stop()
