"""The quarantine file: 0600 from its first byte, and started anew at once on a reopen."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from logship.quarantine import Quarantine
from logship.render.record import Source


def mode(path: Path) -> int:
    """A file's permission bits."""
    return stat.S_IMODE(path.stat().st_mode)


def test_a_reopen_starts_an_empty_0600_file_where_the_old_one_was_moved_away(tmp_path):
    path = tmp_path / "lib" / "quarantine.jsonl"
    quarantine = Quarantine(str(path))
    quarantine.keep(b"{not json", Source("results", routing_key="results"), "not JSON")
    quarantine.sink.flush()
    os.rename(path, tmp_path / "lib" / "quarantine.replay.jsonl")
    quarantine.reopen()
    assert path.read_bytes() == b"" and mode(path) == 0o600
    quarantine.keep(b"again", Source("results"), "not JSON")
    quarantine.sink.flush()
    assert b'"body":"again"' in path.read_bytes() and b"{not json" not in path.read_bytes()
    quarantine.sink.close()


def test_a_reopen_narrows_a_quarantine_file_that_something_else_made_group_readable(tmp_path):
    path = tmp_path / "quarantine.jsonl"
    path.write_bytes(b'{"kept": 1}\n')
    path.chmod(0o640)  # as logrotate's `create 0640` used to leave it
    quarantine = Quarantine(str(path))
    quarantine.reopen()
    assert mode(path) == 0o600 and path.read_bytes() == b'{"kept": 1}\n'
    quarantine.sink.close()
