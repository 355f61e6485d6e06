"""geometry/mesh_io.py: PLY, OBJ and GLB files hold exactly the mesh given."""
import json
import struct

import numpy as np
import pytest
from helpers import read_ply

from geometry import mesh_io

VERTICES = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
FACES = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], dtype=np.int32)
COLORS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [7, 8, 9]], dtype=np.uint8)


def test_ply_round_trip(tmp_path):
    mesh_io.write_mesh(str(tmp_path / 'tetra.ply'), VERTICES, FACES, COLORS, 'a tetrahedron')
    vertices, faces, colors = read_ply(tmp_path / 'tetra.ply')
    np.testing.assert_array_equal(vertices, VERTICES)
    np.testing.assert_array_equal(faces, FACES)
    np.testing.assert_array_equal(colors, COLORS)
    assert b'comment a tetrahedron\n' in (tmp_path / 'tetra.ply').read_bytes()


def test_obj_holds_vertex_colours_and_one_based_faces(tmp_path):
    mesh_io.write_mesh(str(tmp_path / 'tetra.obj'), VERTICES, FACES, COLORS, 'a tetrahedron')
    lines = (tmp_path / 'tetra.obj').read_text().splitlines()
    assert lines[0] == '# a tetrahedron'
    vertex_rows = np.array([line.split()[1:] for line in lines if line.startswith('v ')], dtype=np.float64)
    face_rows = np.array([line.split()[1:] for line in lines if line.startswith('f ')], dtype=np.int64)
    np.testing.assert_allclose(vertex_rows[:, :3], VERTICES)
    np.testing.assert_allclose(vertex_rows[:, 3:] * 255, COLORS, atol=0.02)
    np.testing.assert_array_equal(face_rows - 1, FACES)


def read_glb(path):
    """(the glTF JSON, the binary chunk) of a .glb file, checking the container."""
    data = path.read_bytes()
    magic, version, length = struct.unpack_from('<4sII', data, 0)
    assert (magic, version, length) == (b'glTF', 2, len(data))
    json_length, json_type = struct.unpack_from('<II', data, 12)
    assert json_type == 0x4E4F534A and json_length % 4 == 0
    gltf = json.loads(data[20:20 + json_length])
    binary_length, binary_type = struct.unpack_from('<II', data, 20 + json_length)
    assert binary_type == 0x004E4942 and 28 + json_length + binary_length == len(data)
    return gltf, data[28 + json_length:]


def test_glb_is_a_valid_gltf_binary_with_the_mesh(tmp_path):
    mesh_io.write_mesh(str(tmp_path / 'tetra.glb'), VERTICES, FACES, COLORS, 'a tetrahedron')
    gltf, binary = read_glb(tmp_path / 'tetra.glb')
    assert gltf['asset']['version'] == '2.0' and gltf['asset']['extras']['comment'] == 'a tetrahedron'
    primitive = gltf['meshes'][0]['primitives'][0]
    assert primitive['mode'] == 4  # triangles

    def accessor_array(index, dtype, width):
        accessor = gltf['accessors'][index]
        view = gltf['bufferViews'][accessor['bufferView']]
        assert view['byteOffset'] % 4 == 0
        values = np.frombuffer(binary, dtype=dtype, count=accessor['count'] * width, offset=view['byteOffset'])
        return accessor, values.reshape(accessor['count'], width)

    position, positions = accessor_array(primitive['attributes']['POSITION'], '<f4', 3)
    np.testing.assert_array_equal(positions, VERTICES)
    assert position['min'] == [0, 0, 0] and position['max'] == [1, 1, 1]
    color, rgba = accessor_array(primitive['attributes']['COLOR_0'], '<u2', 4)
    assert color['normalized'] and color['type'] == 'VEC4' and color['componentType'] == 5123
    linear = rgba[:, :3] / 65535.0  # glTF colours are linear; back to sRGB bytes:
    srgb = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055) * 255
    np.testing.assert_allclose(srgb, COLORS, atol=0.5)
    assert (rgba[:, 3] == 65535).all()
    material = gltf['materials'][primitive['material']]
    assert 'KHR_materials_unlit' in material['extensions'] and 'KHR_materials_unlit' in gltf['extensionsUsed']
    assert material['pbrMetallicRoughness']['metallicFactor'] == 0
    _, indices = accessor_array(primitive['indices'], '<u4', 1)
    np.testing.assert_array_equal(indices.reshape(-1, 3), FACES)
    assert gltf['buffers'][0]['byteLength'] <= len(binary)


def test_unknown_extension_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown mesh format '.stl'"):
        mesh_io.write_mesh(str(tmp_path / 'tetra.stl'), VERTICES, FACES, COLORS, 'x')
    assert list(tmp_path.iterdir()) == []
