"""geometry/meshing.py: a sphere's distance field gives that sphere, closed and outward; floaters and cavities go."""
import numpy as np
import pytest

from geometry import meshing

RADIUS = 0.29  # off the grid points, so no triangle is degenerate
STEP = 0.05
LOW = np.array([-0.5, -0.5, -0.5])
COUNT = 21  # grid points per axis: -0.5 .. 0.5


def distance_to_sphere(center=(0.0, 0.0, 0.0), radius=RADIUS):
    axis = LOW[0] + STEP * np.arange(COUNT)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing='ij'), axis=-1)
    return np.linalg.norm(grid - np.array(center), axis=-1) - radius


def test_sphere_field_gives_a_closed_outward_sphere():
    vertices, faces = meshing.mesh_from_field(distance_to_sphere(), LOW, STEP)
    radii = np.linalg.norm(vertices, axis=1)
    assert np.abs(radii - RADIUS).max() < 0.2 * STEP
    corners = vertices[faces]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    assert ((normals * corners.mean(axis=1)).sum(axis=1) > 0).all()  # outward
    # Closed: every edge is shared by exactly two faces.
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, uses = np.unique(edges, axis=0, return_counts=True)
    assert (uses == 2).all()
    assert list(meshing.component_sizes(faces, len(vertices))) == [len(vertices)]


def test_floaters_are_dropped_and_cavities_filled():
    field = distance_to_sphere()
    field = np.minimum(field, distance_to_sphere(center=(0.4, 0.4, 0.4), radius=0.06))  # a small floater
    field = np.maximum(field, -distance_to_sphere(radius=0.1))                         # a hollow centre
    vertices, faces = meshing.mesh_from_field(field, LOW, STEP)
    radii = np.linalg.norm(vertices, axis=1)
    assert np.abs(radii - RADIUS).max() < 0.2 * STEP  # only the outer sphere is left
    assert list(meshing.component_sizes(faces, len(vertices))) == [len(vertices)]


def test_an_object_touching_the_box_is_capped_on_the_box_faces():
    field = distance_to_sphere(center=(0.0, 0.0, -0.5))  # cut in half by the box's far face z = -0.5
    vertices, faces = meshing.mesh_from_field(field, LOW, STEP)
    assert vertices[:, 2].min() == pytest.approx(-0.5)
    assert (vertices >= LOW - 1e-6).all() and (vertices <= -LOW + 1e-6).all()
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    assert (np.unique(edges, axis=0, return_counts=True)[1] == 2).all()


def test_an_empty_field_is_refused():
    with pytest.raises(ValueError, match='no inside point'):
        meshing.mesh_from_field(np.ones((4, 4, 4)), LOW, STEP)
