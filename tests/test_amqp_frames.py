"""The frame loop: the same frames as pika's own loop, however the bytes arrive; only deliveries skip its callbacks."""
from __future__ import annotations

import json
import random
from collections import Counter

import pika
import pika.connection
import pytest
from pika import frame, spec

from helpers import TRACE_OUTPUT, RunningDaemon, line_count, publish, queue_depth, wait_for, write_config
from logship.broker import frames as amqp_frames


class FrameSink:
    """The part of a pika connection that `_on_data_available` uses; keeps the frames it is given."""

    _read_frame = pika.connection.Connection._read_frame
    _trim_frame_buffer = pika.connection.Connection._trim_frame_buffer

    def __init__(self, close_after: int | None = None) -> None:
        self._frame_buffer = b""
        self.bytes_received = self.frames_received = 0
        self.frames: list[bytes] = []
        self.checked: list[str] = []  # the frames that went through _process_frame (callbacks first)
        self.close_after = close_after
        self.is_closed = False

    def _process_frame(self, value: frame.Frame) -> None:
        self.frames_received += 1
        self.checked.append(value.NAME if not isinstance(value, frame.Method) else value.method.NAME)
        self._keep(value)

    def _deliver_frame_to_channel(self, value: frame.Frame) -> None:
        self._keep(value)

    def _keep(self, value: frame.Frame) -> None:
        self.frames.append(value.marshal())
        if self.close_after is not None and len(self.frames) >= self.close_after:
            self.is_closed, self._frame_buffer = True, b""  # as pika's _init_connection_state


def stream(deliveries: int, seed: int, largest_body: int = 300_000) -> bytes:
    """A broker's bytes: deliveries of 0 B up to 300 KB (128 KiB body frames), heartbeats, cancels, RPC replies."""
    rng = random.Random(seed)
    sizes = [size for size in (0, 3, 900, 1100, 5000, 70_000, 300_000) if size <= largest_body]
    parts = []
    for tag in range(1, deliveries + 1):
        body = rng.randbytes(rng.choice(sizes))
        deliver = spec.Basic.Deliver(f"ctag{tag % 3}", tag, tag % 5 == 0, "", "results")
        parts.append(frame.Method(1, deliver).marshal())
        props = spec.BasicProperties(content_type="application/json", delivery_mode=2,
                                     headers={"n": tag, "text": "é" * (tag % 7)})
        parts.append(frame.Header(1, len(body), props).marshal())
        for at in range(0, len(body), 131_064):
            parts.append(frame.Body(1, body[at:at + 131_064]).marshal())
        if tag % 10 == 0:
            parts.append(frame.Heartbeat().marshal())
        if tag % 25 == 0:  # frames a callback may wait for: the broker cancelling, an RPC's reply
            parts.append(frame.Method(1, spec.Basic.Cancel(f"ctag{tag % 3}")).marshal())
            parts.append(frame.Method(1, spec.Basic.QosOk()).marshal())
    return b"".join(parts)


def chunks(data: bytes, seed: int, largest: int) -> list[bytes]:
    """`data` cut at random places, as reads of up to `largest` bytes would return it."""
    rng = random.Random(seed)
    out, at = [], 0
    while at < len(data):
        size = rng.randint(1, largest)
        out.append(data[at:at + size])
        at += size
    return out


def feed(sink: FrameSink, handler, pieces: list[bytes]) -> FrameSink:
    """Hand each piece to `handler` bound to `sink`, as the transport does with each read."""
    for piece in pieces:
        handler(sink, piece)
    return sink


# pika's own loop copies its buffer once a frame: byte-sized reads of large bodies take minutes
@pytest.mark.parametrize("largest, largest_body", [(1, 5000), (7, 5000), (4096, 300_000), (65536, 300_000),
                                                   (400_000, 300_000)])
def test_the_frames_are_the_ones_pika_decodes_wherever_the_reads_split_them(largest, largest_body):
    data = stream(120, seed=largest, largest_body=largest_body)
    pieces = chunks(data, seed=largest + 1, largest=largest)
    theirs = feed(FrameSink(), pika.connection.Connection._on_data_available, pieces)
    ours = feed(FrameSink(), amqp_frames.on_data_available, pieces)
    assert len(theirs.frames) > 2 * 120  # a method and a header frame a delivery, bodies, heartbeats
    assert ours.frames == theirs.frames
    assert ours.bytes_received == theirs.bytes_received == len(data)
    assert ours.frames_received == theirs.frames_received == len(theirs.frames)
    assert ours._frame_buffer == theirs._frame_buffer == b""
    # every frame but a delivery's goes through pika's _process_frame, callbacks and all
    assert Counter(ours.checked) == Counter({"Heartbeat": 12, "Basic.Cancel": 4, "Basic.QosOk": 4})
    assert len(theirs.checked) == len(theirs.frames)


def test_a_partial_frame_waits_for_the_rest():
    data = stream(3, seed=1)
    sink = feed(FrameSink(), amqp_frames.on_data_available, [data[:-5]])
    assert sink._frame_buffer and sink.bytes_received == len(data) - 5 - len(sink._frame_buffer)
    amqp_frames.on_data_available(sink, data[-5:])
    assert b"".join(sink.frames) == data and sink._frame_buffer == b""


def test_nothing_is_decoded_after_the_connection_closes():
    data = stream(5, seed=2)
    sink = feed(FrameSink(close_after=2), amqp_frames.on_data_available, [data])
    assert len(sink.frames) == 2 and sink._frame_buffer == b""


def test_a_bad_frame_end_is_an_error_as_in_pika():
    data = bytearray(stream(1, seed=3))
    data[len(frame.Method(1, spec.Basic.Deliver("ctag1", 1, False, "", "results")).marshal()) - 1] = 0
    for handler in (pika.connection.Connection._on_data_available, amqp_frames.on_data_available):
        with pytest.raises(pika.exceptions.InvalidFrameError):
            handler(FrameSink(), bytes(data))


def test_install_leaves_an_unknown_connection_alone():
    class Other:
        _impl = object()
    assert amqp_frames.install(Other()) is False  # type: ignore[arg-type]


def test_a_real_connection_reads_64_kib_a_call(vhost_url):
    connection = pika.BlockingConnection(pika.URLParameters(vhost_url))
    try:
        assert amqp_frames.install(connection) is True
        assert connection._impl._transport._MAX_RECV_BYTES == amqp_frames.READ_BYTES
        channel = connection.channel()  # a round trip through the new reader
        assert channel.queue_declare("", exclusive=True).method.queue
    finally:
        connection.close()


PADDING_FORMAT = '{{ {"recipient": message.recipient, "padding": message.padding | length} | json }}\n'


def test_the_daemon_writes_every_body_whole_from_tiny_to_larger_than_a_frame(workdir, vhost_url):
    rng = random.Random(5)
    sizes = {f"user{i}@example.com": rng.choice([0, 10, 1000, 70_000, 140_000, 400_000]) for i in range(300)}
    events = [{"queue": "results", "body": {
        "recipient": recipient, "padding": "x" * size,
        "results": [{"state": "delivered", "result": "ok", "time": "2026-11-29T10:00:00Z", "code": 250}]}}
        for recipient, size in sizes.items()]
    publish(vhost_url, events)
    (workdir / "formats" / "trace.j2").write_text(PADDING_FORMAT)
    config = write_config(workdir, vhost_url, TRACE_OUTPUT, queues=("results",))
    output = workdir / "log" / "all.jsonl"
    with RunningDaemon(config) as daemon:
        wait_for(lambda: line_count(output) >= len(sizes), what=f"{len(sizes)} records")
        wait_for(lambda: queue_depth(vhost_url, "results") == 0, what="an empty queue")
        assert daemon.stop() == 0
    written = {r["recipient"]: r["padding"] for r in map(json.loads, output.read_text().splitlines())}
    assert written == sizes
    assert max(sizes.values()) == 400_000


class Consumers:
    """The part of a pika Channel a delivery is handed to: its consumers by tag, the cancelled tags."""

    def __init__(self, tags: tuple[str, ...] = ("ctag0", "ctag1", "ctag2"), cancelled: tuple[str, ...] = ()) -> None:
        self.delivered: list[tuple] = []
        self._consumers = {tag: self._on_message for tag in tags}
        self._cancelled = set(cancelled)

    def _on_message(self, channel: object, method: spec.Basic.Deliver, properties: spec.BasicProperties,
                    body: bytes) -> None:
        assert channel is self
        self.delivered.append(delivery(method, properties, body))


def delivery(method: spec.Basic.Deliver, properties: spec.BasicProperties, body: bytes) -> tuple:
    """What a consumer is given, as plain values to compare."""
    return (method.consumer_tag, method.delivery_tag, method.redelivered, method.exchange, method.routing_key,
            dict(vars(properties)), bytes(body))


def pikas_deliveries(frames: list[bytes]) -> list[tuple]:
    """What pika's own channel assembles from the same frames (its ContentFrameAssembler)."""
    assembler, out = pika.channel.ContentFrameAssembler(), []
    for data in frames:
        value = frame.decode_frame(data)[1]
        if amqp_frames.is_delivery_frame(value):
            done = assembler.process(value)
            if done:
                out.append(delivery(done[0].method, done[1].properties, done[2]))
    return out


@pytest.mark.parametrize("largest, largest_body", [(1, 5000), (7, 5000), (4096, 300_000), (400_000, 300_000)])
def test_a_delivery_reaches_its_consumer_as_pikas_channel_would_assemble_it(largest, largest_body):
    data = stream(120, seed=largest + 7, largest_body=largest_body)
    pieces = chunks(data, seed=largest + 8, largest=largest)
    theirs = feed(FrameSink(), pika.connection.Connection._on_data_available, pieces)
    ours, channel = FrameSink(), Consumers()
    ours._channels = {1: channel}  # type: ignore[attr-defined]
    feed(ours, amqp_frames.on_data_available, pieces)
    expected = pikas_deliveries(theirs.frames)
    assert len(expected) == 120 and channel.delivered == expected
    # only the frames no consumer takes went frame by frame: heartbeats, cancels, RPC replies
    assert {f[0] for f in ours.frames} == {frame.Heartbeat().marshal()[0], spec.FRAME_METHOD}
    assert ours.bytes_received == len(data) and ours.frames_received == theirs.frames_received


def test_a_delivery_for_a_cancelled_consumer_or_an_unknown_channel_goes_pikas_way():
    data = stream(9, seed=11)
    cancelled, unknown = FrameSink(), FrameSink()
    cancelled._channels = {1: Consumers(cancelled=("ctag1",))}  # type: ignore[attr-defined]
    unknown._channels = {2: Consumers()}  # type: ignore[attr-defined]
    feed(cancelled, amqp_frames.on_data_available, [data])
    feed(unknown, amqp_frames.on_data_available, [data])
    theirs = feed(FrameSink(), pika.connection.Connection._on_data_available, [data])
    assert unknown.frames == theirs.frames  # every frame as pika decodes it, to pika's own routing
    tags = [d[0] for d in cancelled._channels[1].delivered]  # type: ignore[attr-defined]
    assert "ctag1" not in tags and len(tags) == 6  # the other three of nine went frame by frame (pika rejects)
    assert len([f for f in cancelled.frames if f[0] == spec.FRAME_HEADER]) == 3


def test_names_and_headers_are_remembered_within_bounds_and_shared_only_when_equal():
    parts = []
    for tag in range(1, 2 * amqp_frames.KEPT + 2):
        props = spec.BasicProperties(content_type="application/json", headers={"n": tag % 3})
        parts += [frame.Method(1, spec.Basic.Deliver("ctag0", tag, False, "mq", f"key{tag}")).marshal(),
                  frame.Header(1, 2, props).marshal(), frame.Body(1, b"{}").marshal()]
    sink, channel = FrameSink(), Consumers()
    sink._channels = {1: channel}  # type: ignore[attr-defined]
    amqp_frames.on_data_available(sink, b"".join(parts))
    assert [d[4] for d in channel.delivered] == [f"key{tag}" for tag in range(1, 2 * amqp_frames.KEPT + 2)]
    assert [d[5]["headers"] for d in channel.delivered[:4]] == [{"n": 1}, {"n": 2}, {"n": 0}, {"n": 1}]
    remembered = sink._logship_deliveries  # type: ignore[attr-defined]
    assert len(remembered.names) <= amqp_frames.KEPT and len(remembered.headers) == 3


@pytest.mark.parametrize("cut", [1, 3, 9, 14])
def test_a_deliver_frame_shorter_than_its_arguments_is_an_invalid_frame(cut):
    method = frame.Method(1, spec.Basic.Deliver("ctag0", 1, False, "", "results")).marshal()
    payload = method[7:-1][:-cut]
    short = method[:3] + len(payload).to_bytes(4, "big") + payload + method[-1:]
    with pytest.raises(pika.exceptions.InvalidFrameError):
        amqp_frames.on_data_available(FrameSink(), short)
