"""The daemon with a syslog output, end to end: RabbitMQ in, rsyslog out, a receiver that stalls."""
from __future__ import annotations

import json
import signal
import time
from collections import Counter

from helpers import RunningDaemon, expected_attempts, publish, queue_depth, traffic, wait_for, write_config
from syslog_receivers import Rsyslog

TCP = 'module(load="imtcp")\ninput(type="imtcp" address="127.0.0.1" port="{port}")'
#: the AMQP heartbeat during the test, seconds: RabbitMQ checks for traffic every interval and
#: drops a connection after two checks that found none, so 6-9 s of silence
HEARTBEAT = 3
#: how long the receiver stays stopped: the issue says a minute; 15 s keeps the suite fast and is
#: still five heartbeat intervals, well past the 9 s by which a silent connection is dropped
#: (it was 25 s with a heartbeat of 5, whose silent connection could last until 15 s)
STALL = 5 * HEARTBEAT
# a trace of the attempt, padded so the kernel's socket buffers fill up during the stall
TRACE = ('{{ {"recipient": message.recipient, "attempt": record.attempt_number, "time": attempt.time} | json }}'
         ' {{ "x" * 6000 }}\n')

# the example, as written, plus the port and a low heartbeat
OUTPUT = """
[[outputs]]
name = "syslog"
type = "syslog"
address = "tcp://127.0.0.1:{port}"   # udp://host:port, tcp://…, tls://…, unix:///dev/log
protocol = "rfc5424"                # or "rfc3164"
facility = "mail"

[[routes]]
format = "trace"
output = "syslog"
"""


FAILED = "an output failed; not acknowledging until it recovers"


def attempts(rsyslog: Rsyslog) -> list[tuple[str, int, str]]:
    """The (recipient, attempt, time) of every message rsyslog received."""
    decoder = json.JSONDecoder()
    return [(t["recipient"], t["attempt"], t["time"])
            for m in rsyslog.received() for t in [decoder.raw_decode(m["msg"])[0]]]


def test_a_receiver_stalled_under_load_loses_nothing_and_the_amqp_connection_stays_up(workdir, vhost_url):
    events = traffic(4000, seed=23)
    half = len(events) // 2
    publish(vhost_url, events[:half])
    (workdir / "formats" / "trace.j2").write_text(TRACE)
    with Rsyslog(workdir / "rsyslog", TCP) as rsyslog:
        config = write_config(workdir, vhost_url, OUTPUT.replace("{port}", str(rsyslog.port)))
        config.write_text(config.read_text().replace("prefetch = 1000", f"prefetch = 1000\nheartbeat = {HEARTBEAT}"))
        with RunningDaemon(config) as daemon:
            wait_for(lambda: len(rsyslog.lines()) > 200, what="the first messages")
            rsyslog.signal(signal.SIGSTOP)
            stalled_at, before = time.monotonic(), len(daemon.messages())
            publish(vhost_url, events[half:])
            wait_for(lambda: FAILED in daemon.messages()[before:], timeout=STALL,
                     what="backpressure: the syslog output stops the acks")
            time.sleep(max(0.0, STALL - (time.monotonic() - stalled_at)))
            waiting = queue_depth(vhost_url, "results") + queue_depth(vhost_url, "retry")
            received_while_stalled = len(rsyslog.lines())
            rsyslog.signal(signal.SIGCONT)
            expected = expected_attempts(events)
            wait_for(lambda: len(rsyslog.lines()) >= len(expected), timeout=60, what=f"{len(expected)} messages")
            wait_for(lambda: queue_depth(vhost_url, "results") + queue_depth(vhost_url, "retry") == 0,
                     what="empty queues")
            assert daemon.stop() == 0
    got = attempts(rsyslog)
    assert waiting > 0, "the stall held deliveries back in the queues"
    assert received_while_stalled < len(expected)
    assert max(Counter(got).values(), default=1) == 1, "an attempt arrived twice"
    assert sorted(got) == expected, "an attempt is missing"
    messages = daemon.messages()
    assert "reconnecting to the broker" not in messages, "the AMQP connection dropped during the stall"
    assert messages.count("consuming") == 1
    assert "outputs recovered; acknowledging again" in messages[before:]
    assert messages.count(FAILED) == 1, "one outage, said once"
