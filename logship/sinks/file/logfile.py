"""One append-only log file: O_APPEND, whole batches or nothing, the inode check, an advisory lock."""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import time
from dataclasses import dataclass

from ...errors import OutputError

LOCK_WAIT = 5.0  # seconds a batch waits for a rotation holding the lock (copytruncate)
# How long a vanished path is left to its rotator: logrotate renames, then creates the new file;
# a file created by us in between would be renamed to NAME-DATE.backup by logrotate.
MISSING_GRACE = 1.0
TAIL_CHUNK = 65536  # bytes read at a time, backwards, looking for a torn last line's start

log = logging.getLogger("logship")


@dataclass(frozen=True)
class Ownership:
    """Mode and owner of the files and folders a sink creates."""

    mode: int = 0o640
    dir_mode: int = 0o750
    uid: int = -1
    gid: int = -1


class LogFile:
    """An open log file at `path`; `append` writes whole lines or cuts the file back."""

    def __init__(self, path: str, own: Ownership, header: str | None = None) -> None:
        self.path, self.own, self.header = path, own, header
        self.fd: int | None = None
        self.size = 0            # bytes in the file after our last write
        self.started: float | None = None  # last write of a file found on disk; None: created here
        self.unsynced = False
        self._missing_since: float | None = None
        self._tail_unchecked = False  # a file found on disk: its last line may be torn

    def append(self, chunks: list[bytes]) -> None:
        """Write all of the chunks (after the header, in a new file) or cut the file back and raise."""
        fd = self.open()
        self._lock(fd)
        try:
            start = os.fstat(fd).st_size
            if self._tail_unchecked:
                start = self._cut_torn_tail(fd, start)
            if start == 0 and self.header:
                chunks = [self.header.encode("utf-8", "replace") + b"\n", *chunks]
            try:
                for chunk in chunks:
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
            except OSError as error:
                self._cut_back(fd, start)
                raise OutputError(f"{self.path}: write failed: {error.strerror}") from None
            self.size = os.lseek(fd, 0, os.SEEK_CUR)
            self.unsynced = True
        finally:
            _unlock(fd)

    def sync(self) -> None:
        """fdatasync the file if something was written since the last sync."""
        if self.unsynced and self.fd is not None:
            try:
                os.fdatasync(self.fd)
            except OSError as error:
                raise OutputError(f"{self.path}: fdatasync failed: {error.strerror}") from None
            self.unsynced = False

    def current_size(self) -> int:
        """The file's size now (0 when not open yet and missing)."""
        try:
            return os.fstat(self.fd).st_size if self.fd is not None else os.stat(self.path).st_size
        except OSError:
            return 0

    def open(self) -> int:
        """The open descriptor, reopened when logrotate moved the file away."""
        if self.fd is not None and self._moved():
            self.close()
        if self.fd is None:
            try:
                self.fd = self._create_or_open()
            except OSError as error:
                raise OutputError(f"{self.path}: cannot open: {error.strerror}") from None
            self.size = os.fstat(self.fd).st_size
        return self.fd

    def _create_or_open(self) -> int:
        """Open for appending; a file created here gets the configured mode and owner."""
        make_folders(os.path.dirname(self.path), self.own)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, self.own.mode)
        except FileExistsError:
            fd = os.open(self.path, flags)
            self.started = os.fstat(fd).st_mtime
            self._tail_unchecked = True
            return fd
        try:
            os.fchmod(fd, self.own.mode)  # the umask must not narrow the configured mode
            if self.own.uid != -1 or self.own.gid != -1:
                os.fchown(fd, self.own.uid, self.own.gid)
        except OSError:
            os.close(fd)
            raise
        self.started = None
        return fd

    def _moved(self) -> bool:
        """Whether to let go of the open file: the path names another file, or none for a while."""
        try:
            on_disk = os.stat(self.path)
        except OSError as error:
            if error.errno != errno.ENOENT:
                return False
            now = time.monotonic()
            self._missing_since = self._missing_since or now
            return now - self._missing_since > MISSING_GRACE  # meanwhile the renamed file takes it
        self._missing_since = None
        held = os.fstat(self.fd)  # type: ignore[arg-type]
        return (on_disk.st_dev, on_disk.st_ino) != (held.st_dev, held.st_ino)

    def _lock(self, fd: int) -> None:
        """A shared flock for the batch; the copytruncate snippet holds an exclusive one while it copies."""
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OutputError(f"{self.path}: locked by another process for over {LOCK_WAIT:.0f} s") from None
                time.sleep(0.01)
            except OSError:
                return  # no flock on this file system: write unlocked

    def _cut_torn_tail(self, fd: int, size: int) -> int:
        """Cut a last line without its newline from a file found on disk; the size after.

        A daemon killed inside write(2) can leave half a batch (Linux ends a write between two
        pages once SIGKILL is pending). That batch was never acked, so it comes again; the
        fragment would otherwise glue itself onto the first record appended now.
        """
        self._tail_unchecked = False
        if size == 0 or not stat.S_ISREG(os.fstat(fd).st_mode):
            return size
        try:
            whole = _last_newline_end(fd, size)
        except OSError:  # not readable by us: append as before
            return size
        if whole < size:
            self._cut_back(fd, whole)
            log.warning("a torn last line was cut from an output file found on disk",
                        extra={"path": self.path, "bytes": size - whole})
        return os.fstat(fd).st_size

    @staticmethod
    def _cut_back(fd: int, size: int) -> None:
        """Drop a partly written batch so the file ends with a whole line."""
        try:
            if os.fstat(fd).st_size > size:
                os.ftruncate(fd, size)
        except OSError:
            pass  # the batch is retried anyway; a reopen starts clean

    def close(self) -> None:
        """Close the descriptor (unsynced data is the caller's business)."""
        fd, self.fd, self._missing_since = self.fd, None, None
        if fd is not None:
            os.close(fd)


def _last_newline_end(fd: int, size: int) -> int:
    """The offset just past the file's last newline (0 when it has none); the descriptor may be write-only."""
    with open(f"/proc/self/fd/{fd}", "rb") as reader:  # the same file, opened for reading
        end = size
        while end > 0:
            start = max(0, end - TAIL_CHUNK)
            reader.seek(start)
            at = reader.read(end - start).rfind(b"\n")
            if at >= 0:
                return start + at + 1
            end = start
    return 0


def _unlock(fd: int) -> None:
    """Release the batch's flock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError:
        pass


def make_folders(folder: str, own: Ownership) -> None:
    """Create `folder` and its missing parents with the configured mode and owner (a loop: no depth overflows it)."""
    missing = []
    while folder and not os.path.isdir(folder):
        missing.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    for path in reversed(missing):
        try:
            os.mkdir(path, own.dir_mode)
        except FileExistsError:
            continue  # made meanwhile, or a file (then the next mkdir or open says ENOTDIR)
        os.chmod(path, own.dir_mode)
        if own.uid != -1 or own.gid != -1:
            os.chown(path, own.uid, own.gid)
