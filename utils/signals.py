"""Stop requests: SIGINT (Ctrl-C) and SIGTERM (`kill`, a cluster's preemption) become a flag that a
long loop checks at a safe point, so it can save its state and exit instead of dying mid-step."""
import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Context manager. While active, the first SIGINT or SIGTERM sets `signal_number` instead of
    ending the process; a second one raises KeyboardInterrupt at once. The previous handlers come
    back on exit. Signal handlers only exist in the main thread: elsewhere this does nothing."""

    def __init__(self):
        self.signal_number = None
        self._previous_handlers = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous_handlers = {number: signal.signal(number, self._handle) for number in STOP_SIGNALS}
        return self

    def __exit__(self, *exc_info):
        for number, handler in self._previous_handlers.items():
            signal.signal(number, handler)
        self._previous_handlers = {}
        return False

    def _handle(self, number, frame):
        if self.signal_number is not None:
            raise KeyboardInterrupt
        self.signal_number = number

    @property
    def requested(self):
        return self.signal_number is not None


def ignore_stop_signals():
    """In a helper process (e.g. a data-loader worker): leave SIGINT and SIGTERM to the main
    process, which stops its helpers itself once it has saved."""
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)
