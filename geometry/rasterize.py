"""Z-buffer rasteriser: a triangle mesh seen from a GRAM camera -> per-pixel depth.

Used to check a mesh against the renderer: it uses the renderer's pixel grid and depth convention
(docs/design.md §1.3-1.4, §4): pixel (row i, column j) is the ray through camera-space
(x_j, y_i, -1 / tan(fov / 2)) with x_j = linspace(-1, 1, N)[j], y_i = linspace(1, -1, N)[i], and a
pixel's depth is the distance from the camera origin along its unit ray to the nearest triangle
(the renderer's z), not the camera-space z. A pixel is covered when its centre lies inside the
projected triangle (edges included).
"""
import torch

from generators import cameras

TRIANGLES_PER_CHUNK = 131072 # triangles rasterised at once (bounds the candidate-pixel tensors)
MIN_CAMERA_DEPTH = 1e-6      # triangles with a vertex closer than this to the camera plane are skipped
PARALLEL_EPS = 1e-12         # |n . d| below this: the ray runs along the triangle's plane


def project(points_camera, img_size, fov):
    """Camera-space points [..., 3] (looking down -z) -> continuous (row, column) pixel coordinates [..., 2]."""
    scale = -cameras.focal_depth(fov)                             # 1 / tan(fov / 2)
    x = scale * points_camera[..., 0] / -points_camera[..., 2]   # in [-1, 1] across the image
    y = scale * points_camera[..., 1] / -points_camera[..., 2]
    half_span = (img_size - 1) / 2
    return torch.stack([(1 - y) * half_span, (x + 1) * half_span], dim=-1)


def world_to_camera(points, cam2world):
    """World points [..., 3] -> camera space of cam2world [4, 4]."""
    rotation, origin = cam2world[:3, :3], cam2world[:3, 3]
    return (points - origin) @ rotation


@torch.no_grad()
def rasterize_depth(vertices, faces, cam2world, img_size, fov):
    """Depth of the nearest triangle at every pixel of one camera.

    Args:
        vertices: [V, 3] world positions (float tensor or array).
        faces: [T, 3] vertex indices.
        cam2world: [4, 4] camera-to-world matrix (cameras.look_at_cam2world).
        img_size: N, fov: vertical field of view in degrees.
    Returns:
        depth [N, N] float32: distance along each pixel's unit ray; +inf where no triangle is hit.
    """
    vertices = torch.as_tensor(vertices, dtype=torch.float64)
    faces = torch.as_tensor(faces, dtype=torch.int64)
    cam2world = torch.as_tensor(cam2world, dtype=torch.float64)
    ray_dirs = cameras.camera_ray_directions(img_size, fov, 0, img_size * img_size, 'cpu', torch.float64)  # [N^2, 3]
    zbuffer = torch.full((img_size * img_size,), float('inf'), dtype=torch.float64)

    camera_vertices = world_to_camera(vertices, cam2world)   # [V, 3]
    pixel_vertices = project(camera_vertices, img_size, fov)  # [V, 2] (row, column)
    for first in range(0, faces.shape[0], TRIANGLES_PER_CHUNK):
        chunk = faces[first:first + TRIANGLES_PER_CHUNK]
        in_front = (-camera_vertices[chunk, 2] > MIN_CAMERA_DEPTH).all(dim=1)
        chunk = chunk[in_front]
        corners = pixel_vertices[chunk]                                          # [t, 3, 2]
        low = corners.amin(dim=1).ceil().clamp(0, img_size - 1).long()           # [t, 2]
        high = corners.amax(dim=1).floor().clamp(-1, img_size - 1).long()
        extent = (high - low + 1).clamp(min=0)                                   # rows, columns per box
        counts = extent[:, 0] * extent[:, 1]
        if int(counts.sum()) == 0:
            continue
        # One candidate per (triangle, pixel of its bounding box).
        triangle = torch.repeat_interleave(torch.arange(chunk.shape[0]), counts)
        local = torch.arange(int(counts.sum())) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        width = extent[triangle, 1]
        row = low[triangle, 0] + local // width
        col = low[triangle, 1] + local % width

        # Inside test: the pixel centre against the three projected edges (either winding).
        a, b, c = corners[triangle, 0], corners[triangle, 1], corners[triangle, 2]   # [n, 2]
        centre = torch.stack([row, col], dim=-1).to(torch.float64)
        edges = torch.stack([_edge(a, b, centre), _edge(b, c, centre), _edge(c, a, centre)], dim=-1)
        inside = (edges >= 0).all(dim=-1) | (edges <= 0).all(dim=-1)

        # Depth: where the pixel's ray meets the triangle's plane (camera origin at 0).
        pixel = (row * img_size + col)[inside]
        tri = chunk[triangle[inside]]
        v0, v1, v2 = camera_vertices[tri[:, 0]], camera_vertices[tri[:, 1]], camera_vertices[tri[:, 2]]
        normal = torch.cross(v1 - v0, v2 - v0, dim=-1)
        direction = ray_dirs[pixel]
        facing = (normal * direction).sum(-1)
        usable = facing.abs() > PARALLEL_EPS
        t = (normal * v0).sum(-1)[usable] / facing[usable]
        zbuffer.scatter_reduce_(0, pixel[usable], t, reduce='amin')
    return zbuffer.reshape(img_size, img_size).float()


def _edge(start, end, point):
    """2D cross product (end - start) x (point - start) for [n, 2] tensors -> [n]."""
    return ((end[:, 0] - start[:, 0]) * (point[:, 1] - start[:, 1])
            - (end[:, 1] - start[:, 1]) * (point[:, 0] - start[:, 0]))


def agreement_with_view(vertices, faces, opacity, depth, cam2world, fov, threshold):
    """How well a mesh reproduces one rendered view (geometry/views.py).

    Args:
        opacity, depth: [N, N] the view's object opacity and depth; cam2world [4, 4]; fov in degrees.
        threshold: opacity of the object mask.
    Returns:
        dict: 'iou' of the mesh's silhouette and the object mask; 'depth_error', the median of
        |mesh depth - rendered depth| / rendered depth over pixels in both (NaN if none);
        'outside', the fraction of the mesh's pixels outside the object mask.
    """
    mesh_depth = rasterize_depth(vertices, faces, cam2world, opacity.shape[-1], fov)
    mesh_mask = torch.isfinite(mesh_depth)
    object_mask = opacity >= threshold
    both = mesh_mask & object_mask
    either = mesh_mask | object_mask
    relative = ((mesh_depth - depth).abs() / depth)[both]
    return {'iou': float(both.sum()) / max(int(either.sum()), 1),
            'depth_error': float(relative.median()) if relative.numel() else float('nan'),
            'outside': float((mesh_mask & ~object_mask).sum()) / max(int(mesh_mask.sum()), 1)}
