"""A file found on disk that ends half-way through a line (a daemon killed inside a write) is cut back first."""
from __future__ import annotations

from pathlib import Path

from logship.sinks.file.sink import FileSink


def test_a_torn_last_line_found_on_disk_is_cut_before_the_first_append(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    path.write_bytes(b"whole one\nwhole two\nhalf of thr")
    sink = FileSink("d", str(path))
    sink.write({}, "three again")
    sink.flush()
    sink.write({}, "four")
    sink.flush()
    sink.close()
    assert path.read_bytes() == b"whole one\nwhole two\nthree again\nfour\n"


def test_a_file_without_any_newline_is_emptied_and_a_whole_file_is_left_as_it_is(tmp_path: Path) -> None:
    torn, whole = tmp_path / "torn.log", tmp_path / "whole.log"
    torn.write_bytes(b"x" * 200_000)  # longer than one backward read
    whole.write_bytes(b"a\n")
    for path in (torn, whole):
        sink = FileSink("d", str(path))
        sink.write({}, "b")
        sink.flush()
        sink.close()
    assert torn.read_bytes() == b"b\n"
    assert whole.read_bytes() == b"a\nb\n"
