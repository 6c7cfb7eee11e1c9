"""A polite stop on SIGTERM (what SLURM sends before it kills a job).

During the accumulation the handler only sets a flag, checked between samples, so a run ends within one
sample with its Gram cache consistent; anywhere else it raises :class:`Stopped` at once, as Ctrl-C raises
KeyboardInterrupt. Either way the run records ``failed:<stage> (SIGTERM)`` and exits non-zero."""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_received: list[str] = []
_deferred: list[bool] = []  # non-empty inside between_samples()


class Stopped(Exception):
    """A stop signal ended the run; the run records it as its failed stage and exits non-zero."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(f"{signal_name} received: run stopped (with engine.cache_dir set, a rerun resumes from the "
                         "samples it finished)")
        self.signal = signal_name


def _on_signal(signum: int, frame: object) -> None:
    _received.append(signal.Signals(signum).name)
    if not _deferred:
        raise Stopped(_received[0])


def install() -> None:
    """Catch SIGTERM in this process (at the start of an app). Python takes signal handlers in the main
    thread only: a job run in a launcher's worker thread keeps the default (SIGTERM kills it)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_signal)


@contextmanager
def between_samples() -> Iterator[None]:
    """Inside, a stop signal is only noted, for :func:`check` to raise between two samples; one noted after
    the last check raises on the way out. (A signal before it has already raised, so it starts with none
    noted.) The handler is in place inside even where no app called :func:`install` (library use, scripts),
    and the previous one comes back after."""
    _received.clear()
    _deferred.append(True)
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_signal) if main else None
    try:
        yield
    finally:
        _deferred.pop()
        if main and previous is not None:  # None: a handler set outside Python, which cannot be put back
            signal.signal(signal.SIGTERM, previous)
    check()


def check() -> None:
    """Raise :class:`Stopped` if a stop signal arrived since :func:`between_samples` began (once: the signal
    is then delivered)."""
    if _received:
        name = _received[0]
        _received.clear()
        raise Stopped(name)
