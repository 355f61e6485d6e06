"""geometry/mesh_io.py: PLY and OBJ files hold exactly the mesh given."""
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


def test_unknown_extension_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown mesh format '.stl'"):
        mesh_io.write_mesh(str(tmp_path / 'tetra.stl'), VERTICES, FACES, COLORS, 'x')
    assert list(tmp_path.iterdir()) == []
