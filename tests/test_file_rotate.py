"""Built-in rotation with a clock the test moves: sizes, periods, names, compression, keep, max_age."""
from __future__ import annotations

import calendar
import gzip
import os
from pathlib import Path

import pytest

from logship.settings import load
from logship.errors import ConfigError
from logship.sinks.file.sink import FileSink
from logship.config.units import parse_age, parse_size
from logship.sinks.file.rotate import RotatePolicy, clean_up, compress, rotated_files

T0 = calendar.timegm((2026, 11, 29, 22, 30, 0))  # 22:30 UTC


class Clock:
    """A wall clock that moves only when told."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(n: int) -> dict:
    """A minimal record (static paths do not look at it)."""
    return {"record": {"received_epoch": T0, "n": n}}


def write_lines(sink: FileSink, start: int, count: int, per_batch: int = 10) -> None:
    """`count` numbered lines, flushed every `per_batch`."""
    for n in range(start, start + count):
        sink.write(record(n), f"line {n:06d} " + "x" * 40)
        if (n + 1) % per_batch == 0:
            sink.flush()
    sink.flush()


def all_lines(folder: Path, header: str | None = None) -> list[str]:
    """Every line of every file in `folder`, gzip ones decompressed, headers left out."""
    lines = []
    for file in sorted(folder.iterdir()):
        data = gzip.decompress(file.read_bytes()) if file.name.endswith(".gz") else file.read_bytes()
        assert b"\0" not in data and (not data or data.endswith(b"\n")), file.name
        lines += [line for line in data.decode().splitlines() if line != header]
    return lines


def test_size_rotation_keeps_every_file_under_the_size_and_loses_no_line(tmp_path):
    clock = Clock()
    sink = FileSink("t", str(tmp_path / "d.log"), rotate=RotatePolicy(size=1000, compress="gzip"), clock=clock)
    write_lines(sink, 0, 200)  # 200 lines of 52 bytes, 10 per batch = 520-byte batches
    sink.close()
    rotated = [os.path.basename(p) for p in rotated_files(str(tmp_path / "d.log"))]
    assert len(rotated) == 19 and all(n.endswith(".gz") for n in rotated)
    assert rotated[0] == "d.log.20261129T223000Z.gz" and rotated[1] == "d.log.20261129T223000Z.1.gz"
    assert all(len(gzip.decompress(p.read_bytes())) <= 1000 for p in tmp_path.glob("*.gz"))
    assert sorted(all_lines(tmp_path)) == [f"line {n:06d} " + "x" * 40 for n in range(200)]


def test_daily_rotation_at_midnight_utc_names_the_file_by_the_rotation_time(tmp_path):
    clock = Clock()
    sink = FileSink("t", str(tmp_path / "d.log"), rotate=RotatePolicy(every="daily", compress="gzip"), clock=clock)
    write_lines(sink, 0, 10)
    clock.now = T0 + 1799  # 22:59:59: same day
    write_lines(sink, 10, 10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.log"]
    clock.now = T0 + 5400  # 00:00 the next day
    write_lines(sink, 20, 10)
    clock.now = T0 + 5400 + 86400 * 2  # two days later: one rotation, not one per missed day
    write_lines(sink, 30, 10)
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "d.log", "d.log.20261130T000000Z.gz", "d.log.20261202T000000Z.gz"]
    assert len(gzip.decompress((tmp_path / "d.log.20261130T000000Z.gz").read_bytes()).splitlines()) == 20
    assert len(all_lines(tmp_path)) == 40


def test_hourly_rotation_and_a_daily_time_pick_the_right_boundaries():
    hourly = RotatePolicy(every="hourly")
    assert hourly.period_end(T0 + 60) == T0 + 1800
    at = RotatePolicy(at="06:15")
    assert at.period_end(T0) == calendar.timegm((2026, 11, 30, 6, 15, 0))
    assert at.period_end(calendar.timegm((2026, 11, 30, 6, 0, 0))) == calendar.timegm((2026, 11, 30, 6, 15, 0))


def test_a_file_left_from_yesterday_is_rotated_before_todays_first_line(tmp_path):
    path = tmp_path / "d.log"
    path.write_text("old\n")
    os.utime(path, (T0 - 86400, T0 - 86400))
    sink = FileSink("t", str(path), rotate=RotatePolicy(every="daily"), clock=Clock())
    write_lines(sink, 0, 1)
    sink.close()
    assert (tmp_path / "d.log.20261129T223000Z").read_text() == "old\n"
    assert path.read_text().startswith("line 000000")


def test_keep_deletes_the_oldest_rotated_files(tmp_path):
    sink = FileSink("t", str(tmp_path / "d.log"), rotate=RotatePolicy(size=600, keep=3, compress="gzip"), clock=Clock())
    write_lines(sink, 0, 100)
    sink.compressor.wait()
    sink.close()
    rotated = [os.path.basename(p) for p in rotated_files(str(tmp_path / "d.log"))]
    assert rotated == ["d.log.20261129T223000Z.6.gz", "d.log.20261129T223000Z.7.gz", "d.log.20261129T223000Z.8.gz"]
    assert (tmp_path / "d.log").read_text().splitlines()[-1] == "line 000099 " + "x" * 40


def test_max_age_deletes_rotated_files_older_than_the_age(tmp_path):
    for hour in range(4):
        rotated = tmp_path / f"d.log.20261130T0{hour}0000Z.gz"
        rotated.write_bytes(b"")
        os.utime(rotated, (T0 + 5400 + hour * 3600, T0 + 5400 + hour * 3600))
    (tmp_path / "other.log.20261130T000000Z").write_bytes(b"")  # not this output's: left alone
    clean_up(str(tmp_path / "d.log"), RotatePolicy(every="hourly", max_age=parse_age("2h")), T0 + 5400 + 3 * 3600)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "d.log.20261130T010000Z.gz", "d.log.20261130T020000Z.gz", "d.log.20261130T030000Z.gz",
        "other.log.20261130T000000Z"]


def test_the_header_starts_every_rotated_file(tmp_path):
    sink = FileSink("t", str(tmp_path / "d.csv"), rotate=RotatePolicy(size=800), clock=Clock())
    sink.header = "n,text"
    write_lines(sink, 0, 60)
    sink.close()
    files = list(tmp_path.iterdir())
    assert len(files) > 3
    assert all(f.read_text().startswith("n,text\n") for f in files)
    assert len(all_lines(tmp_path, header="n,text")) == 60


def test_a_rotated_file_left_uncompressed_by_a_restart_is_compressed_on_start(tmp_path):
    (tmp_path / "d.log.20261128T000000Z").write_text("left\n")
    (tmp_path / "d.log.20261128T000000Z.gz.partial").write_bytes(b"half")
    sink = FileSink("t", str(tmp_path / "d.log"), rotate=RotatePolicy(size=10 ** 6, compress="gzip"), clock=Clock())
    write_lines(sink, 0, 1)
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.log", "d.log.20261128T000000Z.gz"]
    assert gzip.decompress((tmp_path / "d.log.20261128T000000Z.gz").read_bytes()) == b"left\n"


def test_zstd_compression_round_trips(tmp_path):
    import zstandard
    sink = FileSink("t", str(tmp_path / "d.log"), rotate=RotatePolicy(size=600, compress="zstd"), clock=Clock())
    write_lines(sink, 0, 30)
    sink.close()
    packed = [Path(p) for p in rotated_files(str(tmp_path / "d.log"))]
    assert len(packed) == 2
    lines = [zstandard.ZstdDecompressor().decompressobj().decompress(p.read_bytes()) for p in packed]
    assert b"".join(lines) + (tmp_path / "d.log").read_bytes() == b"".join(
        f"line {n:06d} {'x' * 40}\n".encode() for n in range(30))


def test_compression_keeps_mode_and_times_and_removes_the_original(tmp_path):
    plain = tmp_path / "x.log.1"
    plain.write_bytes(b"a\n" * 1000)
    os.chmod(plain, 0o604)
    os.utime(plain, (T0, T0))
    packed = Path(compress(str(plain), "gzip"))
    assert not plain.exists() and packed.name == "x.log.1.gz"
    assert packed.stat().st_mode & 0o777 == 0o604 and packed.stat().st_mtime == T0
    assert gzip.decompress(packed.read_bytes()) == b"a\n" * 1000


def test_the_issue_example_config_loads(tmp_path):
    (tmp_path / "formats").mkdir()
    (tmp_path / "formats" / "f.j2").write_text("{{ message.recipient }}\n")
    (tmp_path / "c.toml").write_text("""
[[queues]]
name = "results"

[[outputs]]
name = "deliveries"
type = "file"
path = "log/deliveries.log"
rotate = { size = "100MB", every = "daily", keep = 30, compress = "gzip" }

[[outputs]]
name = "per-domain"
type = "file"
path = "log/{{ record.recipient_domain }}/%Y-%m-%d.log"   # strftime codes: the record's received time (UTC)

[[routes]]
format = "f"
output = "deliveries"
""")
    config = load(tmp_path / "c.toml")
    rotate = config.output("deliveries").rotate
    assert parse_size(rotate.size) == 100 * 1024 ** 2 and rotate.every == "daily" and rotate.keep == 30
    assert config.output("per-domain").path == str(tmp_path / "log/{{ record.recipient_domain }}/%Y-%m-%d.log")


@pytest.mark.parametrize("rotate, problem", [
    ('{ size = "100XB" }', "outputs[0].rotate.size"),
    ('{ every = "weekly" }', "outputs[0].rotate.every"),
    ('{ at = "25:00" }', "outputs[0].rotate.at"),
    ('{ keep = 3 }', "outputs[0].rotate"),
    ('{ size = "1MB", max_age = "soon" }', "outputs[0].rotate.max_age"),
    ('{ size = "1MB", colour = "red" }', "outputs[0].rotate.colour"),
])
def test_a_bad_rotate_table_is_a_config_error_naming_the_key(tmp_path, rotate, problem):
    (tmp_path / "c.toml").write_text(f"""
[[queues]]
name = "results"

[[outputs]]
name = "d"
type = "file"
path = "d.log"
rotate = {rotate}
""")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path / "c.toml")
    assert caught.value.key == problem
