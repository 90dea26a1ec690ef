"""Which failures are a lost connection (reconnect) and which are logship's own bugs (surface)."""
from __future__ import annotations

import pytest
from pika.adapters.select_connection import IOLoop

from logship.broker.connection import raised_by_pika
from logship.render.record import outcome


def caught(call) -> BaseException:  # type: ignore[no-untyped-def]
    """The exception `call` raises."""
    with pytest.raises(Exception) as info:
        call()
    return info.value


def test_a_timer_asked_of_a_closed_ioloop_is_pikas_failure() -> None:
    loop = IOLoop()
    loop.close()  # what a heartbeat timeout leaves behind a partition
    error = caught(lambda: loop.call_later(1.0, lambda: None))
    assert isinstance(error, ValueError) and raised_by_pika(error)


def test_an_error_in_logships_code_called_by_pika_is_not_pikas() -> None:
    loop = IOLoop()
    loop.add_callback_threadsafe(lambda: outcome(None, True))  # type: ignore[arg-type]
    loop.call_later(0, loop.stop)
    error = caught(loop.start)
    loop.close()
    assert not raised_by_pika(error)


def test_an_error_outside_pika_and_logship_is_not_pikas() -> None:
    assert not raised_by_pika(caught(lambda: int("x")))
