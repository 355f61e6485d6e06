"""Geometry of generated subjects: the surface GRAM's renderer shows, as a mesh, and checks on it.

- views.py: render an identity from cameras over the trained pose range -> object opacity, depth, rgb.
- fusion.py: fuse those views into a truncated signed distance volume over the object's box.
- meshing.py: floaters and cavities out, marching cubes -> closed triangle mesh.
- coloring.py: vertex colours from the views that see each vertex (network rgb elsewhere).
- rasterize.py: z-buffer rasteriser in the renderer's camera convention; mesh-vs-render agreement.
- mesh_io.py: PLY / OBJ writers (atomic).
extract_shapes.py drives them; docs/shapes.md describes the method and its measured accuracy.
"""
