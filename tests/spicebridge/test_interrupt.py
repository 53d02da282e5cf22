"""Ctrl-C during a libngspice call: held while the call (and the Python callbacks it makes)
runs, raised when it returns; an exception raised inside a ctypes callback cannot cross C
(ctypes prints "Exception ignored ... Traceback" and drops it: the Ctrl-C was lost)."""

from __future__ import annotations

import signal
import threading

import pytest

from spicebridge.engines.shared import _sigint_deferred


def test_a_ctrl_c_inside_a_library_call_is_raised_after_it():
    reached = []
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), _sigint_deferred():
        signal.raise_signal(signal.SIGINT)  # as the terminal's Ctrl-C in a callback
        reached.append("after the signal")  # not raised here, where C would drop it
    assert reached == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is before  # the handler there was is back


def test_no_ctrl_c_no_exception_and_other_threads_pass_through():
    with _sigint_deferred():
        pass
    errors = []

    def other() -> None:  # signal handlers can only be set in the main thread
        try:
            with _sigint_deferred():
                pass
        except BaseException as e:  # pragma: no cover - the failure it guards against
            errors.append(e)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert errors == []


@pytest.mark.ngspice
def test_the_shared_library_defers_ctrl_c_in_its_calls(shared_engine):
    """A command's output comes back through the ``_on_char`` callback; a Ctrl-C pending when
    the command runs is raised after it, once, and the library still works."""
    from spicebridge.engines.shared import _nglib

    lib = _nglib()
    with pytest.raises(KeyboardInterrupt), _sigint_deferred():
        signal.raise_signal(signal.SIGINT)
        lib.command("echo still running")  # nested: its own deferral, then ours
    assert lib.command("echo again") == 0
