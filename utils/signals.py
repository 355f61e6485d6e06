"""Stop requests: SIGINT (Ctrl-C) and SIGTERM (`kill`, a cluster's preemption) become a flag that a
long loop checks at a safe point, so it can save its state and exit instead of dying mid-step."""
import os
import signal
import threading
import time

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# A repeat of the stop signal within this many seconds is the same request delivered twice (a
# cluster signals every process of a job and torchrun forwards it again; a dying spawn parent
# sends its ranks SIGINT); a later one means "stop now".
REPEAT_GRACE_SECONDS = 2.0


class StopRequest:
    """Context manager. While active, the first SIGINT or SIGTERM sets `signal_number` instead of
    ending the process; a second one more than REPEAT_GRACE_SECONDS later ends it at once, as the
    signal would have without this handler. The previous handlers come back on exit. Signal
    handlers only exist in the main thread: elsewhere this does nothing."""

    def __init__(self):
        self.signal_number = None
        self._received_at = None
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
        now = time.monotonic()
        if self.signal_number is None:
            self.signal_number, self._received_at = number, now
        elif now - self._received_at > REPEAT_GRACE_SECONDS:
            if number == signal.SIGINT:
                raise KeyboardInterrupt
            signal.signal(number, signal.SIG_DFL)  # end the process as the signal does by default
            os.kill(os.getpid(), number)

    @property
    def requested(self):
        return self.signal_number is not None


def ignore_stop_signals():
    """In a helper process (e.g. a data-loader worker): leave SIGINT and SIGTERM to the main
    process, which stops its helpers itself once it is done."""
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)
