"""Geometry of generated subjects: the surface GRAM's renderer shows, as a mesh, and checks on it;
the camera paths the render scripts and the viewer take around a subject.

- views.py: render an identity from cameras over the trained pose range -> object opacity, depth, rgb.
- fusion.py: fuse those views into a truncated signed distance volume over the object's box.
- meshing.py: floaters and cavities out, marching cubes -> closed triangle mesh.
- coloring.py: vertex colours from the views that see each vertex (network rgb elsewhere).
- rasterize.py: z-buffer rasteriser in the renderer's camera convention; mesh-vs-render agreement.
- mesh_io.py: PLY / OBJ writers (atomic).
- extraction.py: the mesh of one identity from the steps above (extract_shapes.py, the viewer's mesh button);
  docs/shapes.md describes the method and its measured accuracy.
- trajectories.py: camera family of a config; sweep / orbit / grid trajectories (render_multiview_images.py,
  the viewer's orbit video).
"""
