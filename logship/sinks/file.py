"""Whole lines appended to a file: O_APPEND, batched writes, fdatasync before acks."""
from __future__ import annotations

import errno
import os
import time
from typing import Any

from ..config import FileOutput, Route
from ..errors import OutputError


class FileSink:
    """Appends lines to one path; a failed write is cut back so no torn line remains."""

    def __init__(self, name: str, path: str, sync: str | float = "batch",
                 mode: int = 0o640, dir_mode: int = 0o750) -> None:
        self.name, self.path, self.sync = name, path, sync
        self.mode, self.dir_mode = mode, dir_mode
        self.header: str | None = None  # written first into a file this sink starts
        self._lines: list[str] = []
        self._fd: int | None = None
        self._unsynced = False
        self._last_sync = time.monotonic()

    @classmethod
    def from_config(cls, output: FileOutput) -> FileSink:
        """A sink for a [[outputs]] table of type file."""
        return cls(output.name, output.path, output.sync, int(output.mode, 8), int(output.dir_mode, 8))

    def write(self, record: dict[str, Any], line: str, route: Route | None = None) -> None:
        """Buffer one line until the next flush (the route does not matter to a file)."""
        self._lines.append(line)

    def flush(self) -> None:
        """Write the buffered lines in one go and fdatasync as configured."""
        if self._lines:
            data = ("\n".join(self._lines) + "\n").encode("utf-8", "replace")
            self._append(data)
            self._lines.clear()
            self._unsynced = True
        if self._unsynced and self._sync_due():
            try:
                os.fdatasync(self._open())
            except OSError as error:
                raise OutputError(f"{self.path}: fdatasync failed: {error.strerror}") from None
            self._unsynced = False
            self._last_sync = time.monotonic()

    def _sync_due(self) -> bool:
        """Whether this flush must fdatasync (see README: durability)."""
        if self.sync == "batch":
            return True
        if self.sync == "never":
            self._unsynced = False
            return False
        return time.monotonic() - self._last_sync >= float(self.sync)

    def _append(self, data: bytes) -> None:
        """Write all of `data` or, on failure, cut the file back to where it was."""
        fd = self._open()
        start = os.fstat(fd).st_size
        if start == 0 and self.header:
            data = self.header.encode("utf-8", "replace") + b"\n" + data
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError as error:
            self._cut_back(fd, start)
            raise OutputError(f"{self.path}: write failed: {error.strerror}") from None

    def _cut_back(self, fd: int, size: int) -> None:
        """Drop a partly written batch so the file ends with a whole line."""
        try:
            if os.fstat(fd).st_size > size:
                os.ftruncate(fd, size)
        except OSError:
            pass  # the batch is retried anyway; a reopen starts clean

    def _open(self) -> int:
        """The open descriptor, reopened when logrotate moved the file away."""
        if self._fd is not None and not self._same_file():
            self.reopen()
        if self._fd is None:
            try:
                os.makedirs(os.path.dirname(self.path) or ".", mode=self.dir_mode, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, self.mode)
            except OSError as error:
                raise OutputError(f"{self.path}: cannot open: {error.strerror}") from None
        return self._fd

    def _same_file(self) -> bool:
        """Whether the path still names the open file (the WatchedFileHandler check)."""
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        except OSError as error:
            if error.errno == errno.ENOENT:
                return False
            return True
        held = os.fstat(self._fd)  # type: ignore[arg-type]
        return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)

    def reopen(self) -> None:
        """Close the file; the next flush opens the path again."""
        if self._fd is not None:
            try:
                os.close(self._fd)
            finally:
                self._fd = None

    def close(self) -> None:
        """Close the file."""
        self.reopen()
