"""Whole lines appended to files: batched writes, fdatasync before acks, rotation, per-record paths."""
from __future__ import annotations

import errno
import grp
import os
import pwd
import time
from collections import OrderedDict
from typing import Any, Callable

from ...config.load import Route
from ...config.outputs import FileOutput
from ...errors import OutputError, RecordRefused
from .paths import PathTemplate, is_template
from .logfile import LogFile, Ownership, make_folders
from ...config.units import parse_age, parse_size
from .rotate import Compressor, RotatePolicy, pending, rotated_name


# What the OS answers when a path cannot be a file for its shape (a file where a folder must
# be, or the reverse; too long): the record's fault, not the output's.
PATH_ERRORS = frozenset({errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EEXIST, errno.ELOOP, errno.EINVAL})
PROBED_MAX = 10_000  # paths remembered as fine; forgotten all at once past this
# Buffered lines are encoded this many at a time (about 100 KB), not all at the flush: a
# replay's 14,000-line flush joined them into one 5-9 MB text and 4.5 MB of bytes, a heap of
# fresh pages (page faults, cache misses) that chunks of this size never grow.
FOLD = 256


class FileSink:
    """Appends lines to one path, or to per-record paths under a base folder; rotates if asked."""

    def __init__(self, name: str, path: str, sync: str | float = "batch", mode: int = 0o640,
                 dir_mode: int = 0o750, *, uid: int = -1, gid: int = -1, rotate: RotatePolicy | None = None,
                 max_open_files: int = 256, clock: Callable[[], float] = time.time) -> None:
        self.name, self.path, self.sync = name, path, sync
        self.own = Ownership(mode, dir_mode, uid, gid)
        self.rotate, self.max_open_files, self.clock = rotate, max_open_files, clock
        self.template = PathTemplate(path) if is_template(path) else None
        self.header: str | None = None  # written first into every file this sink starts
        self._buffers: dict[str, list[str]] = {}   # lines not encoded yet, per path
        self._chunks: dict[str, list[bytes]] = {}  # lines encoded FOLD at a time, before those
        # Per-record paths are worked out, and refused when unsafe, before anything of the
        # message is written (see Sink.check); one fixed path has nothing to check.
        self.check: Callable[[dict[str, Any]], str] | None = self._path_of if self.template else None
        # paths check (_path_of) worked out, so that write() need not render them again: id -> (record, path)
        self._checked: dict[int, tuple[dict[str, Any], str]] = {}
        self._files: OrderedDict[str, LogFile] = OrderedDict()  # least recently used first
        self._scanned: set[str] = set()
        self._probed: set[str] = set()  # per-record paths whose folders exist and that are no folder
        self._last_sync = time.monotonic()
        self.compressor = Compressor(name, clock) if rotate else None

    @classmethod
    def from_config(cls, output: FileOutput, clock: Callable[[], float] = time.time) -> FileSink:
        """A sink for a [[outputs]] table of type file."""
        uid = pwd.getpwnam(output.owner).pw_uid if output.owner else -1
        gid = grp.getgrnam(output.group).gr_gid if output.group else -1
        return cls(output.name, output.path, output.sync, int(output.mode, 8), int(output.dir_mode, 8),
                   uid=uid, gid=gid, rotate=policy(output), max_open_files=output.max_open_files, clock=clock)

    def _path_of(self, record: dict[str, Any]) -> str:
        """The file `record` goes to; RecordRefused when its path would be unsafe (called before writing)."""
        try:
            path = self.template.render(record)  # type: ignore[union-attr]
        except RecordRefused as error:
            raise RecordRefused(f"output {self.name!r}: {error}") from None
        if path not in self._files and path not in self._probed:
            self._probe(path)
        self._checked[id(record)] = (record, path)
        return path

    def _probe(self, path: str) -> None:
        """Make the path's folders now; RecordRefused when its shape collides with what exists.

        Found here, a collision is the record's route failing (quarantined); found at the
        flush, it would be an output failure that holds back the acks of every queue.
        """
        try:
            make_folders(os.path.dirname(path), self.own)
            if not os.path.isdir(os.path.dirname(path)):
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory")
            if os.path.isdir(path):
                raise IsADirectoryError(errno.EISDIR, "Is a directory")
        except OSError as error:
            if error.errno in PATH_ERRORS:
                raise RecordRefused(f"output {self.name!r}: path {path[:300]!r} refused: {error.strerror}") from None
            return  # disk full and the like: the flush fails and holds the acks, as for any output
        if len(self._probed) >= PROBED_MAX:
            self._probed.clear()
        self._probed.add(path)

    def write(self, record: dict[str, Any], line: str, route: Route | None = None) -> None:
        """Buffer one line for its file until the next flush (the route does not matter to a file)."""
        if self.template is None:
            path = self.path
        else:
            checked = self._checked.pop(id(record), None)
            path = checked[1] if checked is not None and checked[0] is record else self._path_of(record)
        lines = self._buffers.get(path)
        if lines is None:
            lines = self._buffers[path] = []
        lines.append(line)
        if len(lines) >= FOLD:
            self._chunks.setdefault(path, []).append(_encoded(lines))
            lines.clear()

    def flush(self) -> None:
        """Write each file's buffered lines in one go, rotate when due, fdatasync as configured."""
        self._checked.clear()  # what a quarantined message left behind
        failures = []
        for path, lines in list(self._buffers.items()):
            chunks = self._chunks.get(path, [])
            try:
                self._append(path, [*chunks, _encoded(lines)] if lines else chunks)
                del self._buffers[path]
                self._chunks.pop(path, None)
            except OutputError as error:
                failures.append(str(error))
        try:
            self._sync()
        except OutputError as error:
            failures.append(str(error))
        if failures:
            raise OutputError("; ".join(failures))

    def _append(self, path: str, chunks: list[bytes]) -> None:
        """Append the chunks to the file at `path`, rotating it first when it is due."""
        file = self._file(path)
        if self.rotate:
            self._rotate_if_due(file, sum(map(len, chunks)))
        file.append(chunks)

    def _sync(self) -> None:
        """fdatasync every file written since the last sync, as the policy says (docs/file-output.md: durability)."""
        if self.sync == "never":
            return
        if self.sync != "batch" and time.monotonic() - self._last_sync < float(self.sync):
            return
        for file in self._files.values():
            file.sync()
        self._last_sync = time.monotonic()

    def _file(self, path: str) -> LogFile:
        """The LogFile for `path`, most recently used; the least recently used closes past the cap."""
        file = self._files.get(path)
        if file is not None:
            self._files.move_to_end(path)
            return file
        while len(self._files) >= self.max_open_files:
            self._retire(next(iter(self._files)))
        file = self._files[path] = LogFile(path, self.own, self.header)
        if self.rotate and path not in self._scanned:
            self._scanned.add(path)
            for left in pending(path):  # rotated before a restart, not compressed yet
                self.compressor.submit(path, left, self.rotate)  # type: ignore[union-attr]
        return file

    def _retire(self, path: str) -> None:
        """Sync and close one open file to stay under max_open_files."""
        file = self._files[path]
        if self.sync != "never":
            file.sync()  # raises OutputError and keeps the file when the sync fails
        file.close()
        del self._files[path]

    def _rotate_if_due(self, file: LogFile, incoming: int) -> None:
        """Rotate `file` before `incoming` more bytes when it is too big or its period is over."""
        policy, now = self.rotate, self.clock()
        assert policy is not None
        file.open()  # the inode check: logrotate may have moved it already
        if file.started is None:
            file.started = now
        if file.size == 0:
            return
        end = policy.period_end(file.started)
        if (policy.size and file.size + incoming > policy.size) or (end is not None and now >= end):
            self._rotate_now(file, policy, now)
            file.open()
            file.started = now

    def _rotate_now(self, file: LogFile, policy: RotatePolicy, now: float) -> None:
        """Rename the file to its rotated name and hand it to the compressor; the next write starts anew."""
        if self.sync != "never":
            file.sync()
        rotated = rotated_name(file.path, policy.stamp(now))
        try:
            os.rename(file.path, rotated)
        except OSError as error:
            raise OutputError(f"{file.path}: cannot rotate: {error.strerror}") from None
        file.close()
        file.started = None
        self.compressor.submit(file.path, rotated, policy)  # type: ignore[union-attr]

    def reopen(self) -> None:
        """Close every file (synced first); the next flush opens the paths again."""
        for path in list(self._files):
            try:
                self._retire(path)
            except OutputError:
                pass  # kept open: the next flush syncs it again before any ack

    def close(self) -> None:
        """Close every file and stop the compressor after its queued work."""
        self.reopen()
        for file in self._files.values():
            file.close()
        self._files.clear()
        if self.compressor:
            self.compressor.close()


def _encoded(lines: list[str]) -> bytes:
    """Lines as UTF-8, each with its newline."""
    return ("\n".join(lines) + "\n").encode("utf-8", "replace")


def policy(output: FileOutput) -> RotatePolicy | None:
    """The rotation policy of a file output, or None when it does not rotate."""
    r = output.rotate
    if r is None:
        return None
    return RotatePolicy(size=parse_size(r.size) if r.size is not None else None, every=r.every, at=r.at,
                        local=r.timezone == "local", keep=r.keep,
                        max_age=parse_age(r.max_age) if r.max_age is not None else None,
                        compress=None if r.compress == "none" else r.compress)
