"""utils.signals: a stop signal becomes a request; a repeat soon after is the same request; a late
second one stops at once; handlers are restored."""
import os
import signal

import pytest

from utils import signals


def test_first_signal_is_a_request_and_a_quick_repeat_changes_nothing():
    before = signal.getsignal(signal.SIGTERM)
    with signals.StopRequest() as stop_request:
        assert not stop_request.requested
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)  # within REPEAT_GRACE_SECONDS: the same request
        assert stop_request.requested and stop_request.signal_number == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_late_second_ctrl_c_stops_at_once(monkeypatch):
    readings = [100.0, 100.0 + signals.REPEAT_GRACE_SECONDS + 1]  # the first signal, then the second
    monkeypatch.setattr(signals.time, 'monotonic', lambda: readings.pop(0) if len(readings) > 1 else readings[0])
    with signals.StopRequest() as stop_request, pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        assert stop_request.signal_number == signal.SIGINT
        os.kill(os.getpid(), signal.SIGINT)
