"""A render thread that only ever renders the latest request.

Requests (camera moves, control changes) arrive faster than frames render. The loop keeps just
the newest one: when a render finishes it takes whatever is newest at that moment, so no stale
frame is ever rendered and the picture lags the camera by at most about two renders. A request
is first rendered as a preview (smaller, fast) while requests keep coming; once none has
arrived for `rest_seconds`, the latest is rendered again in full.
"""
import threading
import time
import traceback

DEFAULT_REST_SECONDS = 0.25  # the camera is at rest after this long without a new request
STOP_TIMEOUT_SECONDS = 30.0  # how long stop() waits for a render in flight


class LatestRenderLoop:
    """Render the latest request in a background thread.

    Args:
        render: render(request) -> frame; called in the loop's thread.
        publish: publish(frame, request) -> None; called in the loop's thread after each render.
        preview_of: preview_of(request) -> the request to render while requests keep coming, or
            None when the request itself is fast enough.
        rest_seconds: quiet time after the latest request before it is rendered in full.
        on_error: called with a one-line message when a render or publish raises; the loop then
            carries on with the next request.
    """

    def __init__(self, render, publish, preview_of, rest_seconds=DEFAULT_REST_SECONDS, on_error=None,
                 name='render-loop'):
        self._render, self._publish, self._preview_of = render, publish, preview_of
        self._rest_seconds = rest_seconds
        self._on_error = on_error or (lambda message: None)
        self._condition = threading.Condition()
        self._request = None
        self._requested_at = 0.0
        self._version = 0     # number of requests so far; the latest one's id
        self._shown = 0       # the latest version published (preview or full)
        self._refined = 0     # the latest version published in full
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def request(self, request):
        """Replace the pending request by `request` (returns at once)."""
        with self._condition:
            self._request = request
            self._requested_at = time.monotonic()
            self._version += 1
            self._condition.notify()

    def latest_request(self):
        """The latest request (None before the first)."""
        with self._condition:
            return self._request

    def stop(self, timeout=STOP_TIMEOUT_SECONDS):
        """End the thread after the render in flight, if any."""
        with self._condition:
            self._stopped = True
            self._condition.notify()
        self._thread.join(timeout)

    def _next_job(self):
        """Block until there is something to render: (version, request to render, is_full), or None
        once stopped."""
        with self._condition:
            while not self._stopped:
                quiet = time.monotonic() - self._requested_at
                if self._version != self._shown and quiet < self._rest_seconds:
                    preview = self._preview_of(self._request)
                    if preview is not None:
                        return self._version, preview, False
                if self._version != self._refined:
                    if self._version != self._shown or quiet >= self._rest_seconds:
                        return self._version, self._request, True
                    self._condition.wait(self._rest_seconds - quiet)
                else:
                    self._condition.wait()
            return None

    def _run(self):
        while (job := self._next_job()) is not None:
            version, request, is_full = job
            try:
                self._publish(self._render(request), request)
            except Exception as error:  # noqa: BLE001 -- a failed frame must not end the viewer
                self._on_error(f'{type(error).__name__}: {error}')
                traceback.print_exc()
                is_full = True  # do not retry the failing request; wait for the next one
            with self._condition:
                self._shown = max(self._shown, version)
                if is_full:
                    self._refined = max(self._refined, version)
