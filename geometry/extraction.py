"""Mesh of the surface one identity shows, fused from views rendered over the trained pose range
(docs/shapes.md; extract_shapes.py and the viewer's mesh button call extract_mesh).

1. render the identity from fusion_cameras: a grid over the config's trained pose range, a camera
   every view_step degrees in azimuth and elevation (views.py);
2. fuse the views' object opacity and depth into a truncated signed distance volume over the
   object's box (fusion.py);
3. drop floaters, fill cavities and run marching cubes (meshing.py);
4. colour each vertex with the mean rendered colour of the views that see it, the radiance
   network's rgb along the pose prior's mean view direction where none does (coloring.py);
5. measure how well the mesh reproduces each view (rasterize.py).
"""
import math

import torch

from geometry import coloring, fusion, mesh_io, meshing, rasterize, views

DEFAULT_RESOLUTION = 128     # marching-cubes grid points along the longest side of the object's box
DEFAULT_VIEW_SIZE = 64       # pixels per side of each fused view
DEFAULT_VIEW_STEP = 15.0     # degrees between neighbouring fused cameras (azimuth and elevation)
DEFAULT_CHUNK_POINTS = 65536  # vertices per radiance-network call when colouring (bounds memory)
MIN_VIEW_SIZE = 8            # smaller views cannot outline an object
VISIBILITY_STEPS = 2.0       # a vertex within this many grid steps of a view's z-buffer is seen by it
MESH_COMMENT = 'GRAM surface fused from rendered views (geometry.extraction)'


def fusion_cameras(config, view_step):
    """camera_pos [C, 2] = (phi, theta) over the config's trained pose range, neighbours <= view_step degrees apart."""
    return views.pose_grid(*views.pose_range(config['generator']['kwargs']), math.radians(view_step))


@torch.no_grad()
def extract_mesh(generator, config, frequencies, phase_shifts, camera_pos, resolution=DEFAULT_RESOLUTION,
                 view_size=DEFAULT_VIEW_SIZE, threshold=views.DEFAULT_OPACITY_THRESHOLD,
                 chunk_points=DEFAULT_CHUNK_POINTS, progress=None):
    """Mesh of the surface one identity shows from the cameras camera_pos [C, 2] (module docstring).

    Args:
        frequencies, phase_shifts: [1, 9 H] the identity's FiLM parameters (generator.film_parameters).
        threshold: object opacity (0..1) separating object from background pixels.
        progress: optional tqdm bar advanced once per rendered view.
    Returns:
        vertices [V, 3] float32 (world), faces [T, 3] int32 (outward normals), colors [V, 3] uint8,
        and per view the agreement dict of rasterize.agreement_with_view.
    Raises ValueError (one line) when no view shows an object.
    """
    camera = config['camera']
    rendered = views.render_views(generator, frequencies, phase_shifts, camera_pos, view_size, camera,
                                  progress=progress)
    points = fusion.object_points(rendered, camera['fov'], threshold)
    if len(points) == 0:
        raise ValueError(f"the object's opacity never reaches --threshold {threshold:g} in any of the "
                         f"{len(camera_pos)} views (highest {float(rendered['opacity'].max()):.3g}): the model draws no solid "
                         f"object (barely trained?); train longer, or lower --threshold below that value to mesh "
                         f"what is there")
    low, step, counts = fusion.object_box(points, resolution, generator.renderer.background)
    field = fusion.fuse_views(rendered, camera['fov'], threshold, low, step, counts)
    vertices, faces = meshing.mesh_from_field(field.numpy(), low.numpy(), step)
    colors, seen = coloring.view_colors(vertices, faces, rendered, camera['fov'], threshold, VISIBILITY_STEPS * step)
    colors[~seen] = coloring.network_colors(generator.representation.rf_network, frequencies, phase_shifts,
                                            vertices[~seen.numpy()],
                                            views.mean_view_direction(config['generator']['kwargs']), chunk_points)
    colors = (colors.clamp(0, 1) * mesh_io.PIXEL_MAX).round().to(torch.uint8).numpy()
    return vertices, faces, colors, _agreement(vertices, faces, rendered, camera['fov'], threshold)


def agreement_with_renders(generator, config, frequencies, phase_shifts, vertices, faces, camera_pos, img_size,
                           threshold=views.DEFAULT_OPACITY_THRESHOLD):
    """How well a mesh reproduces fresh renders of its identity from cameras camera_pos [C, 2] at
    img_size px (any cameras, not only the fused ones): one rasterize.agreement_with_view dict per camera."""
    rendered = views.render_views(generator, frequencies, phase_shifts, camera_pos, img_size, config['camera'])
    return _agreement(vertices, faces, rendered, config['camera']['fov'], threshold)


def _agreement(vertices, faces, rendered, fov, threshold):
    """rasterize.agreement_with_view of the mesh with each view of views.render_views' output."""
    return [rasterize.agreement_with_view(vertices, faces, rendered['opacity'][view], rendered['depth'][view],
                                          rendered['cam2world'][view], fov, threshold)
            for view in range(len(rendered['cam2world']))]
