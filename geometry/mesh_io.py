"""Writing coloured triangle meshes: binary PLY and Wavefront OBJ, both written atomically.

Meshes are vertices [V, 3] float (world), faces [T, 3] int (0-based, counter-clockwise seen from
outside) and colors [V, 3] uint8.
- PLY: binary little-endian, per-vertex uchar red/green/blue (MeshLab, Blender, Open3D, trimesh).
- OBJ: text, `v x y z r g b` with colours in [0, 1] (the common vertex-colour extension, read by
  MeshLab, Blender and trimesh), 1-based `f a b c`.
"""
import numpy as np

from utils.files import atomic_path

FORMATS = ('ply', 'obj')
PIXEL_MAX = 255  # uchar colours


def write_mesh(path, vertices, faces, colors, comment):
    """Write the mesh in the format named by the extension of `path` (.ply or .obj)."""
    extension = path.rsplit('.', 1)[-1].lower()
    if extension not in FORMATS:
        raise ValueError(f"unknown mesh format '.{extension}'; use one of {', '.join(FORMATS)}")
    writer = write_ply if extension == 'ply' else write_obj
    writer(path, vertices, faces, colors, comment)


def write_ply(path, vertices, faces, colors, comment='GRAM mesh'):
    """Binary little-endian PLY with per-vertex uchar colours; `comment` is one header line."""
    vertex_data = np.empty(len(vertices), dtype=[('x', '<f4'), ('y', '<f4'), ('z', '<f4'),
                                                 ('red', 'u1'), ('green', 'u1'), ('blue', 'u1')])
    for axis, name in enumerate('xyz'):
        vertex_data[name] = vertices[:, axis]
    for channel, name in enumerate(('red', 'green', 'blue')):
        vertex_data[name] = colors[:, channel]
    face_data = np.empty(len(faces), dtype=[('count', 'u1'), ('indices', '<i4', (3,))])
    face_data['count'] = 3
    face_data['indices'] = faces
    header = '\n'.join([
        'ply', 'format binary_little_endian 1.0', f'comment {comment}',
        f'element vertex {len(vertices)}', 'property float x', 'property float y', 'property float z',
        'property uchar red', 'property uchar green', 'property uchar blue',
        f'element face {len(faces)}', 'property list uchar int vertex_indices', 'end_header']) + '\n'
    with atomic_path(path) as tmp_path, open(tmp_path, 'wb') as handle:
        handle.write(header.encode('ascii'))
        handle.write(vertex_data.tobytes())
        handle.write(face_data.tobytes())


def write_obj(path, vertices, faces, colors, comment='GRAM mesh'):
    """Wavefront OBJ with `v x y z r g b` vertex colours in [0, 1] and 1-based faces."""
    vertex_lines = np.concatenate([np.asarray(vertices, dtype=np.float64),
                                   np.asarray(colors, dtype=np.float64) / PIXEL_MAX], axis=1)
    with atomic_path(path) as tmp_path, open(tmp_path, 'w') as handle:
        handle.write(f'# {comment}\n')
        np.savetxt(handle, vertex_lines, fmt='v %.6f %.6f %.6f %.4f %.4f %.4f')
        np.savetxt(handle, np.asarray(faces, dtype=np.int64) + 1, fmt='f %d %d %d')
