"""Signed distance volume -> triangle mesh: drop small disconnected parts, then marching cubes.

The volume is negative inside (geometry/fusion.py). Inside grid points are grouped into connected
components (6-neighbourhood); components smaller than MIN_COMPONENT_FRACTION of the largest are
floaters and become outside, and enclosed pockets of outside points (cavities no camera can see
into) become inside. The volume is padded with one layer of outside values, so the
surface is always closed (where the object touches the grid's box, flat caps on the box's faces
close it), and scikit-image's marching cubes extracts its zero level set.
"""
import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph
from skimage import measure

MIN_COMPONENT_FRACTION = 0.05  # inside components below this fraction of the largest one are dropped


def keep_large_components(inside, min_fraction=MIN_COMPONENT_FRACTION):
    """Boolean grid [X, Y, Z] -> the same without components smaller than min_fraction of the largest."""
    labels, count = ndimage.label(inside)
    if count <= 1:
        return inside
    sizes = np.bincount(labels.ravel())[1:]  # label 0 is the outside
    large = np.flatnonzero(sizes >= min_fraction * sizes.max()) + 1
    return np.isin(labels, large)


def mesh_from_field(field, low, step, min_fraction=MIN_COMPONENT_FRACTION):
    """Closed mesh of the zero level set of a signed field (negative inside) on a regular grid.

    Args:
        field: [X, Y, Z] array; grid point (i, j, k) is at low + step * (i, j, k).
        low: [3] world position of grid point (0, 0, 0); step: grid spacing.
    Returns:
        vertices [V, 3] float32 (world), faces [T, 3] int32 with outward normals.
    Raises ValueError when no grid point is inside.
    """
    field = np.asarray(field, dtype=np.float64)
    inside = field < 0
    if not inside.any():
        raise ValueError('the fused volume has no inside point: the views agree on no object')
    extreme = float(np.abs(field).max())
    solid = ndimage.binary_fill_holes(keep_large_components(inside, min_fraction))
    field = np.where(solid & ~inside, -extreme, field)  # cavities in
    field = np.where(inside & ~solid, extreme, field)   # floaters out
    padded = np.pad(field, 1, constant_values=extreme)
    # 'descent': the field decreases into the object, so the face winding gives outward normals.
    vertices, faces, _, _ = measure.marching_cubes(padded, level=0.0, spacing=(step, step, step),
                                                   gradient_direction='descent')
    # Undo the padding (grid -> world); the caps closing the surface on the padding layer move onto
    # the grid's faces, so the mesh stays inside the grid's box.
    low = np.asarray(low, dtype=np.float64)
    vertices = np.clip(vertices - step + low, low, low + step * (np.array(field.shape) - 1))
    return vertices.astype(np.float32), faces.astype(np.int32)


def component_sizes(faces, num_vertices):
    """Vertex counts of a mesh's connected components (vertices joined by face edges), largest first."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    adjacency = sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(num_vertices, num_vertices))
    _, labels = csgraph.connected_components(adjacency, directed=False)
    return np.sort(np.bincount(labels, minlength=1))[::-1]
