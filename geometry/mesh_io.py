"""Writing coloured triangle meshes: binary PLY, Wavefront OBJ and binary glTF, written atomically.

Meshes are vertices [V, 3] float (world), faces [T, 3] int (0-based, counter-clockwise seen from
outside) and colors [V, 3] uint8.
- PLY: binary little-endian, per-vertex uchar red/green/blue (MeshLab, Blender, Open3D, trimesh).
- OBJ: text, `v x y z r g b` with colours in [0, 1] (the common vertex-colour extension, read by
  MeshLab, Blender and trimesh), 1-based `f a b c`.
- GLB: glTF 2.0 binary, one triangle mesh with POSITION, COLOR_0 and uint32 indices, and an unlit
  material (KHR_materials_unlit: the colours already hold the rendered shading; viewers without the
  extension fall back to a rough, non-metallic material). glTF vertex colours are linear, so the
  sRGB colours are converted and stored as normalised 16-bit RGBA (no banding). Blender, three.js,
  web and phone viewers read it. The world's +y is up and +z faces the frontal camera, which is
  glTF's convention too, so coordinates are written as they are.
"""
import json
import struct

import numpy as np

from utils.files import atomic_path

PIXEL_MAX = 255  # uchar colours

# glTF 2.0 binary container and enumerations (Khronos glTF 2.0 specification).
GLB_MAGIC = b'glTF'
GLB_VERSION = 2
GLB_HEADER = struct.Struct('<4sII')    # magic, version, total length
GLB_CHUNK_HEADER = struct.Struct('<II')  # chunk length, chunk type
GLB_CHUNK_JSON = 0x4E4F534A
GLB_CHUNK_BIN = 0x004E4942
GLB_ALIGNMENT = 4                     # chunks (and vertex attributes) start on 4-byte boundaries
GLTF_ARRAY_BUFFER, GLTF_ELEMENT_ARRAY_BUFFER = 34962, 34963
GLTF_FLOAT, GLTF_UNSIGNED_SHORT, GLTF_UNSIGNED_INT = 5126, 5123, 5125
GLTF_TRIANGLES = 4
GLTF_UNLIT = 'KHR_materials_unlit'
SHORT_MAX = 65535  # normalised uint16 colours
# sRGB transfer function (IEC 61966-2-1): linear = c / 12.92 up to 0.04045, else ((c + 0.055) / 1.055)^2.4.
SRGB_LINEAR_LIMIT = 0.04045
SRGB_LINEAR_SLOPE = 12.92
SRGB_OFFSET = 0.055
SRGB_GAMMA = 2.4


def srgb_to_linear(colors):
    """uint8 sRGB colours [V, 3] -> linear floats in [0, 1]."""
    c = np.asarray(colors, dtype=np.float64) / PIXEL_MAX
    return np.where(c <= SRGB_LINEAR_LIMIT, c / SRGB_LINEAR_SLOPE, ((c + SRGB_OFFSET) / (1 + SRGB_OFFSET)) ** SRGB_GAMMA)


def write_mesh(path, vertices, faces, colors, comment):
    """Write the mesh in the format named by the extension of `path` (FORMATS)."""
    extension = path.rsplit('.', 1)[-1].lower()
    if extension not in WRITERS:
        raise ValueError(f"unknown mesh format '.{extension}'; use one of {', '.join(FORMATS)}")
    WRITERS[extension](path, vertices, faces, colors, comment)


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


def _padded(data, fill):
    """`data` (bytes) padded with `fill` to a multiple of GLB_ALIGNMENT bytes."""
    return data + fill * (-len(data) % GLB_ALIGNMENT)


def write_glb(path, vertices, faces, colors, comment='GRAM mesh'):
    """glTF 2.0 binary: one mesh, float32 positions, linear RGBA uint16 colours (alpha 1), uint32
    indices, an unlit material; `comment` goes into asset.extras."""
    positions = np.ascontiguousarray(vertices, dtype='<f4')                                   # [V, 3]
    linear = np.round(srgb_to_linear(colors) * SHORT_MAX)
    rgba = np.concatenate([linear, np.full((len(positions), 1), SHORT_MAX)], axis=1).astype('<u2')  # [V, 4]
    indices = np.ascontiguousarray(faces, dtype='<u4').reshape(-1)                          # [3 T]
    blobs = [positions.tobytes(), rgba.tobytes(), indices.tobytes()]  # each a multiple of 4 bytes
    offsets = np.cumsum([0] + [len(blob) for blob in blobs]).tolist()
    targets = (GLTF_ARRAY_BUFFER, GLTF_ARRAY_BUFFER, GLTF_ELEMENT_ARRAY_BUFFER)
    gltf = {
        'asset': {'version': '2.0', 'generator': 'GRAM geometry.mesh_io', 'extras': {'comment': comment}},
        'scene': 0,
        'scenes': [{'nodes': [0]}],
        'nodes': [{'mesh': 0}],
        'meshes': [{'primitives': [{'attributes': {'POSITION': 0, 'COLOR_0': 1}, 'indices': 2, 'material': 0,
                                    'mode': GLTF_TRIANGLES}]}],
        'materials': [{'pbrMetallicRoughness': {'metallicFactor': 0.0, 'roughnessFactor': 1.0},
                       'extensions': {GLTF_UNLIT: {}}}],
        'extensionsUsed': [GLTF_UNLIT],
        'buffers': [{'byteLength': offsets[-1]}],
        'bufferViews': [{'buffer': 0, 'byteOffset': offsets[i], 'byteLength': len(blobs[i]), 'target': targets[i]}
                        for i in range(len(blobs))],
        'accessors': [
            {'bufferView': 0, 'componentType': GLTF_FLOAT, 'count': len(positions), 'type': 'VEC3',
             'min': positions.min(axis=0).tolist(), 'max': positions.max(axis=0).tolist()},
            {'bufferView': 1, 'componentType': GLTF_UNSIGNED_SHORT, 'normalized': True, 'count': len(rgba),
             'type': 'VEC4'},
            {'bufferView': 2, 'componentType': GLTF_UNSIGNED_INT, 'count': len(indices), 'type': 'SCALAR'},
        ],
    }
    json_chunk = _padded(json.dumps(gltf, separators=(',', ':')).encode('utf-8'), b' ')
    binary_chunk = _padded(b''.join(blobs), b'\0')
    total = GLB_HEADER.size + 2 * GLB_CHUNK_HEADER.size + len(json_chunk) + len(binary_chunk)
    with atomic_path(path) as tmp_path, open(tmp_path, 'wb') as handle:
        handle.write(GLB_HEADER.pack(GLB_MAGIC, GLB_VERSION, total))
        handle.write(GLB_CHUNK_HEADER.pack(len(json_chunk), GLB_CHUNK_JSON) + json_chunk)
        handle.write(GLB_CHUNK_HEADER.pack(len(binary_chunk), GLB_CHUNK_BIN) + binary_chunk)


WRITERS = {'ply': write_ply, 'obj': write_obj, 'glb': write_glb}  # file extension -> writer
FORMATS = tuple(WRITERS)
