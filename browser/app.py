"""The viser application: a 3D scene whose background is the generator's render of the browser's
own camera, GUI controls for the subject and the view, and buttons that save what is shown.

Every browser tab (a viser client) gets a Session: a LatestRenderLoop fed with a ViewRequest on
each camera message and on each control change, publishing frames with
client.scene.set_background_image. The controls are shared by all tabs; cameras are per tab.
"""
import math
import os
import threading
import time

import trimesh
import viser

from browser import views
from browser.frames import Subject, ViewRequest, preview_of
from browser.render_loop import LatestRenderLoop
from geometry import mesh_io
from geometry.extraction import DEFAULT_RESOLUTION as DEFAULT_MESH_RESOLUTION
from geometry.extraction import (
    DEFAULT_VIEW_STEP,
    MESH_COMMENT,
    extract_mesh,
    fusion_cameras,
)
from geometry.trajectories import camera_family
from utils import cli
from utils.images import write_png
from utils.video import ANIMATION_FPS, write_mp4

DEFAULT_PSI = 0.7               # truncation of the seeds (the render script's default)
DEFAULT_ROWS = 64               # picture height in pixels
ROWS_RANGE = (16, 512, 16)      # resolution slider: min, max, step
FOV_RANGE = (5, 90, 1)          # field-of-view slider in degrees: min, max, step
ORBIT_FRAMES = 30               # frames of a saved orbit video (the render script's default)
FRAME_FORMAT = 'png'            # how frames travel to the browser (lossless)
NOTE_SECONDS = 8                # notifications close after this long
MESH_NODE = '/mesh'             # scene node of the extracted mesh
LATENT_LABEL = 'latent'         # file-name label of the loaded latent


class Session:
    """One browser tab: its camera and its render loop.

    frames_published counts the frames sent to the tab; last_published is the latest one's
    ViewRequest (tests and benchmarks read both).
    """

    def __init__(self, app, client):
        self.app = app
        self.client = client
        self.frames_published = 0
        self.last_published = None
        self.loop = LatestRenderLoop(app.renderer.frame, self._publish, preview_of, on_error=app.report_error,
                                     name=f'render-client-{client.client_id}')

    def current_request(self):
        """The ViewRequest of the tab's camera and the current controls (full resolution)."""
        return self.app.request_for(views.BrowserCamera.from_handle(self.client.camera))

    def refresh(self):
        """Ask for a new frame of the current camera and controls."""
        self.loop.request(self.current_request())

    def _publish(self, frame, request):
        self.client.scene.set_background_image(frame, format=FRAME_FORMAT)
        self.frames_published += 1
        self.last_published = request


class ViewerApp:
    """Serve the viewer of one generator on http://host:port until stop().

    Args:
        renderer: browser.frames.FrameRenderer of the generator.
        config: the generator's config (camera family, the mesh button's cameras).
        output_dir: where saved frames, videos and meshes go.
        host, port: where to listen (viser takes the next free port when `port` is taken).
        camera_pos: initial (phi, theta) in radians (default: the camera family's frontal view).
        seed, rows, psi: initial controls.
        mesh_resolution: marching-cubes grid of the mesh button (extract_shapes.py --resolution).
    """

    def __init__(self, renderer, config, output_dir, host='127.0.0.1', port=8080, camera_pos=None, seed=0,
                 rows=DEFAULT_ROWS, psi=DEFAULT_PSI, mesh_resolution=DEFAULT_MESH_RESOLUTION):
        self.renderer = renderer
        self.config = config
        self.family = camera_family(config)
        self.output_dir = output_dir
        self.mesh_resolution = mesh_resolution
        self.sessions = {}
        self._sessions_lock = threading.Lock()
        self._mesh = None
        if camera_pos is None:
            camera_pos = (self.family['pitch'], math.pi / 2)
        self.home_pose = views.browser_pose(camera_pos)

        self.server = viser.ViserServer(host=host, port=port, label='GRAM viewer', verbose=False)
        self.server.scene.set_up_direction('+y')  # viser's world axes are then ours
        initial = self.server.initial_camera
        initial.position, initial.look_at, initial.up = self.home_pose
        initial.fov = math.radians(self.family['fov'])
        self._add_controls(seed, rows, psi)
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)

    @property
    def url(self):
        """The page's address."""
        return f'http://{self.server.get_host()}:{self.server.get_port()}'

    # ------------------------------------------------------------------ controls
    def _add_controls(self, seed, rows, psi):
        gui = self.server.gui
        with gui.add_folder('Subject'):
            self.use_latent = gui.add_checkbox('loaded latent', self.renderer.latent is not None,
                                               visible=self.renderer.latent is not None,
                                               hint='show the latent given with --latent instead of the seed')
            self.seed = gui.add_number('seed', seed, min=0, step=1)
            self.seed_b = gui.add_number('seed B', seed + 1, min=0, step=1)
            self.blend = gui.add_slider('blend to B', 0.0, 1.0, 0.01, 0.0,
                                        hint='interpolate the FiLM parameters toward seed B')
            self.psi = gui.add_slider('truncation psi', 0.0, 1.0, 0.05, psi)
        with gui.add_folder('View'):
            self.mode = gui.add_dropdown('view', views.VIEW_MODES, initial_value=views.VIEW_MODES[0],
                                         hint='rgb; depth (near = bright); composited object weight')
            self.rows = gui.add_slider('resolution', *ROWS_RANGE, rows, hint='picture height in pixels')
            self.fov = gui.add_slider('fov (degrees)', *FOV_RANGE, round(self.family['fov']),
                                      hint="the browser camera's vertical field of view")
            self.lock_view = gui.add_checkbox('lock view dependence', self.family['lock_view_dependence'])
            self.reset_camera = gui.add_button('reset camera')
        with gui.add_folder('Save'):
            self.save_frame = gui.add_button('save frame (PNG)')
            self.save_video = gui.add_button('save orbit video (MP4)')
            self.save_mesh = gui.add_button('extract mesh (PLY)')
            self.show_mesh = gui.add_checkbox('show mesh', True, disabled=True)

        for handle in (self.use_latent, self.seed, self.seed_b, self.blend, self.psi, self.mode, self.rows,
                       self.lock_view):
            handle.on_update(lambda _: self.refresh_all())
        self.fov.on_update(lambda _: self._set_fov())
        self.reset_camera.on_click(lambda event: self._reset_camera(event.client))
        self.save_frame.on_click(lambda event: self._guarded(event, self._save_frame))
        self.save_video.on_click(lambda event: self._guarded(event, self._save_video))
        self.save_mesh.on_click(lambda event: self._guarded(event, self._save_mesh))
        self.show_mesh.on_update(lambda _: self._show_mesh())

    def subject(self):
        """The Subject the controls describe."""
        seed = None if self.use_latent.value else int(self.seed.value)
        return Subject(seed, int(self.seed_b.value), float(self.blend.value), float(self.psi.value))

    def request_for(self, camera):
        """The full-resolution ViewRequest of BrowserCamera `camera` under the current controls."""
        return ViewRequest(camera, self.subject(), int(self.rows.value), self.mode.value, bool(self.lock_view.value))

    def subject_label(self, subject):
        """A file-name label: seed3, latent, or seed3-seed7-0.50 for a blend."""
        first = LATENT_LABEL if subject.seed is None else f'seed{subject.seed}'
        return first if subject.blend == 0 else f'{first}-seed{subject.seed_b}-{subject.blend:.2f}'

    # ------------------------------------------------------------------ clients
    def _connect(self, client):
        session = Session(self, client)
        with self._sessions_lock:
            self.sessions[client.client_id] = session

        async def camera_moved(_):  # runs on viser's event loop: just hand the camera to the render loop
            session.refresh()

        client.camera.on_update(camera_moved)
        client.camera.fov = math.radians(self.fov.value)
        session.refresh()

    def _disconnect(self, client):
        with self._sessions_lock:
            session = self.sessions.pop(client.client_id, None)
        if session is not None:
            session.loop.stop()

    def session_of(self, client):
        with self._sessions_lock:
            return self.sessions.get(client.client_id)

    def refresh_all(self):
        """Re-render every tab (after a control changed)."""
        with self._sessions_lock:
            sessions = list(self.sessions.values())
        for session in sessions:
            session.refresh()

    def _set_fov(self):
        for client in self.server.get_clients().values():
            client.camera.fov = math.radians(self.fov.value)
        self.refresh_all()

    def _reset_camera(self, client):
        position, look_at, up = self.home_pose
        client.camera.up_direction = up
        client.camera.position = position
        client.camera.look_at = look_at

    def report_error(self, message):
        """Show a one-line error in every tab."""
        for client in self.server.get_clients().values():
            client.add_notification('error', message, color='red', auto_close_seconds=NOTE_SECONDS)

    def stop(self):
        """Stop every render loop and the server."""
        with self._sessions_lock:
            sessions, self.sessions = list(self.sessions.values()), {}
        for session in sessions:
            session.loop.stop()
        self.server.stop()

    # ------------------------------------------------------------------ saving
    def _guarded(self, event, action):
        """Run a save action for the tab that clicked, with its button disabled and errors shown."""
        session = self.session_of(event.client)
        if session is None:
            return
        button = event.target
        button.disabled = True
        try:
            action(session)
        except (cli.UserError, OSError, ValueError) as error:
            event.client.add_notification('error', cli.one_line(error), color='red',
                                          auto_close_seconds=NOTE_SECONDS)
        finally:
            button.disabled = False

    def output_path(self, kind, subject, extension):
        """output_dir/<kind>_<subject>_<time>.<extension>, numbered when taken."""
        stem = f"{kind}_{self.subject_label(subject)}_{time.strftime('%Y%m%d-%H%M%S')}"
        path, number = os.path.join(self.output_dir, f'{stem}.{extension}'), 1
        while os.path.exists(path):
            path, number = os.path.join(self.output_dir, f'{stem}-{number}.{extension}'), number + 1
        return path

    def _deliver(self, client, path, title):
        """Tell the tab where `path` was written and offer it as a download (handy over SSH)."""
        client.add_notification(title, f'saved {path}', auto_close_seconds=NOTE_SECONDS)
        with open(path, 'rb') as handle:
            client.send_file_download(os.path.basename(path), handle.read())

    def _save_frame(self, session):
        request = session.current_request()
        path = self.output_path('frame', request.subject, 'png')
        write_png(self.renderer.frame(request), path)
        self._deliver(session.client, path, 'frame saved')

    def _save_video(self, session):
        request = session.current_request()
        note = session.client.add_notification('orbit video', f'rendering {ORBIT_FRAMES} frames', loading=True,
                                               with_close_button=False)

        def progress(done):
            note.body = f'rendering frame {done} / {ORBIT_FRAMES}'

        try:
            frames = self.renderer.orbit_frames(request, ORBIT_FRAMES, self.family['name'] == 'object', progress)
            path = self.output_path('orbit', request.subject, 'mp4')
            write_mp4(frames, path, ANIMATION_FPS)
        finally:
            note.remove()
        self._deliver(session.client, path, 'orbit video saved')

    def _save_mesh(self, session):
        subject = session.current_request().subject
        camera_pos = fusion_cameras(self.config, DEFAULT_VIEW_STEP)
        note = session.client.add_notification('mesh', f'fusing {len(camera_pos)} rendered views', loading=True,
                                               with_close_button=False)
        try:
            vertices, faces, colors, _ = extract_mesh(self.renderer.generator, self.config,
                                                      *self.renderer.film(subject), camera_pos, self.mesh_resolution)
            path = self.output_path('mesh', subject, 'ply')
            mesh_io.write_ply(path, vertices, faces, colors, MESH_COMMENT)
        finally:
            note.remove()
        self._mesh = self.server.scene.add_mesh_trimesh(
            MESH_NODE, trimesh.Trimesh(vertices, faces, vertex_colors=colors, process=False),
            visible=bool(self.show_mesh.value))
        self.show_mesh.disabled = False
        self._deliver(session.client, path, f'mesh saved ({len(vertices)} vertices)')

    def _show_mesh(self):
        if self._mesh is not None:
            self._mesh.visible = bool(self.show_mesh.value)
