"""The browser viewer's library (viewer.py is the command): camera conversion and view rendering
(views), view requests of one generator (frames), the latest-request render thread (render_loop),
and the viser application (app)."""
