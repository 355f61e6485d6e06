"""geometry/mesh_io.py: PLY and OBJ files hold exactly the mesh given."""
import numpy as np
import pytest

from geometry import mesh_io

VERTICES = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
FACES = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], dtype=np.int32)
COLORS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [7, 8, 9]], dtype=np.uint8)


def read_ply(path):
    """Minimal reader for the files write_ply produces -> (vertices, faces, colors)."""
    data = path.read_bytes()
    header, body = data.split(b'end_header\n', 1)
    lines = header.decode('ascii').splitlines()
    assert lines[:2] == ['ply', 'format binary_little_endian 1.0']
    num_vertices = int(next(line for line in lines if line.startswith('element vertex')).split()[-1])
    num_faces = int(next(line for line in lines if line.startswith('element face')).split()[-1])
    vertex_type = np.dtype([('xyz', '<f4', (3,)), ('rgb', 'u1', (3,))])
    face_type = np.dtype([('count', 'u1'), ('indices', '<i4', (3,))])
    vertices = np.frombuffer(body, vertex_type, num_vertices)
    faces = np.frombuffer(body, face_type, num_faces, offset=num_vertices * vertex_type.itemsize)
    assert len(body) == num_vertices * vertex_type.itemsize + num_faces * face_type.itemsize
    assert (faces['count'] == 3).all()
    return vertices['xyz'], faces['indices'], vertices['rgb']


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


def test_unknown_extension_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown mesh format '.stl'"):
        mesh_io.write_mesh(str(tmp_path / 'tetra.stl'), VERTICES, FACES, COLORS, 'x')
    assert list(tmp_path.iterdir()) == []
