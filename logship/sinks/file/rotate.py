"""Built-in rotation: when a file is due, its rotated name, and compression plus clean-up off the write path."""
from __future__ import annotations

import datetime as dt
import gzip
import logging
import os
import queue
import re
import shutil
import threading
import time
from dataclasses import dataclass
from typing import Callable


log = logging.getLogger("logship")

SUFFIXES = {"gzip": ".gz", "zstd": ".zst"}


@dataclass(frozen=True)
class RotatePolicy:
    """When to rotate one file and what to keep; `clock` is injectable for tests."""

    size: int | None = None
    every: str | None = None        # "hourly" or "daily"
    at: str | None = None           # "HH:MM": daily at this time
    local: bool = False             # time boundaries and names in local time rather than UTC
    keep: int | None = None
    max_age: float | None = None
    compress: str | None = None     # "gzip" or "zstd"

    def period_end(self, since: float) -> float | None:
        """The first time boundary after `since`, or None when rotation is not by time."""
        if not (self.every or self.at):
            return None
        zone = None if self.local else dt.timezone.utc
        moment = dt.datetime.fromtimestamp(since, zone)
        if self.every == "hourly":
            start = moment.replace(minute=0, second=0, microsecond=0)
            return (start + dt.timedelta(hours=1)).timestamp()
        hour, minute = (int(x) for x in (self.at or "00:00").split(":"))
        boundary = moment.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if boundary <= moment:
            boundary = (boundary.replace(tzinfo=None) + dt.timedelta(days=1)).replace(tzinfo=zone)
        return boundary.timestamp()

    def stamp(self, when: float) -> str:
        """The rotated-file suffix for a rotation at `when`: 20261129T045100Z (or without Z, local)."""
        if self.local:
            return time.strftime("%Y%m%dT%H%M%S", time.localtime(when))
        return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))


def rotated_name(path: str, stamp: str) -> str:
    """The name for `path` rotated at `stamp`: path.STAMP, or path.STAMP.N after the newest such name."""
    taken = [_order(f)[1] for f in rotated_files(path) if _order(f)[0] == stamp]
    return f"{path}.{stamp}" if not taken else f"{path}.{stamp}.{max(taken) + 1}"


_ROTATED = re.compile(r"\.(\d{8}T\d{6}Z?)(?:\.(\d+))?(?:\.gz|\.zst)?$")


def _order(rotated: str) -> tuple[str, int]:
    """(stamp, sequence) of a rotated file's name: the order files were rotated in."""
    match = _ROTATED.search(os.path.basename(rotated))
    assert match is not None
    return match.group(1), int(match.group(2) or 0)


def rotated_files(path: str) -> list[str]:
    """The rotated files of `path`, oldest first (compressed or not)."""
    folder, base = os.path.split(path)
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return []
    found = [os.path.join(folder, n) for n in names
             if n.startswith(base) and _ROTATED.fullmatch(n[len(base):])]
    return sorted(found, key=_order)


class Compressor:
    """One background thread: compresses rotated files, then applies keep and max_age."""

    def __init__(self, name: str, clock: Callable[[], float] = time.time) -> None:
        self.name, self.clock = name, clock
        self._jobs: queue.Queue[tuple[str, str, RotatePolicy] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, path: str, rotated: str, policy: RotatePolicy) -> None:
        """Queue one rotated file (`rotated`, from `path`); starts the thread on first use."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"logship-compress-{self.name}", daemon=True)
                self._thread.start()
        self._jobs.put((path, rotated, policy))

    def wait(self) -> None:
        """Block until every queued job is done (tests, shutdown)."""
        self._jobs.join()

    def close(self) -> None:
        """Finish the queued jobs and stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            thread.join()

    def _run(self) -> None:
        """The thread: one job at a time until the None sentinel."""
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                self._do(*job)
            except Exception as error:  # a failed compression must not stop later ones
                log.error("rotated file not compressed or cleaned up", extra={"output": self.name, "error": str(error)})
            finally:
                self._jobs.task_done()

    def _do(self, path: str, rotated: str, policy: RotatePolicy) -> None:
        """Compress one rotated file (when configured), then delete what keep/max_age allow."""
        if policy.compress and os.path.exists(rotated):
            compress(rotated, policy.compress)
        clean_up(path, policy, self.clock())


def compress(path: str, method: str) -> str:
    """Compress `path` to path.gz (or .zst) durably, then remove `path`; a crash leaves one whole copy."""
    target = path + SUFFIXES[method]
    partial = target + ".partial"
    with open(path, "rb") as source, open(partial, "wb") as raw:
        if method == "zstd":
            import zstandard
            with zstandard.ZstdCompressor().stream_writer(raw, closefd=False) as packed:
                shutil.copyfileobj(source, packed, 1 << 20)
        else:
            with gzip.GzipFile(filename=os.path.basename(path), mode="wb", fileobj=raw, mtime=0) as packed:
                shutil.copyfileobj(source, packed, 1 << 20)
        raw.flush()
        os.fsync(raw.fileno())
    shutil.copystat(path, partial)
    os.chown(partial, os.stat(path).st_uid, os.stat(path).st_gid)
    os.rename(partial, target)
    os.unlink(path)
    return target


def clean_up(path: str, policy: RotatePolicy, now: float) -> None:
    """Delete rotated files beyond `keep` (oldest first) and those older than `max_age`."""
    files = rotated_files(path)
    doomed = set(files[:-policy.keep] if policy.keep else ([] if policy.keep is None else files))
    if policy.max_age is not None:
        for file in files:
            try:
                if now - os.stat(file).st_mtime > policy.max_age:
                    doomed.add(file)
            except FileNotFoundError:
                pass
    for file in doomed:
        try:
            os.unlink(file)
        except FileNotFoundError:
            pass


def pending(path: str) -> list[str]:
    """Rotated files of `path` left uncompressed (a crash or restart mid-compression)."""
    for partial in _partials(path):
        os.unlink(partial)
    return [f for f in rotated_files(path) if not f.endswith(tuple(SUFFIXES.values()))]


def _partials(path: str) -> list[str]:
    """Half-written compressed files of `path`, to be thrown away."""
    folder, base = os.path.split(path)
    try:
        return [os.path.join(folder, n) for n in os.listdir(folder or ".")
                if n.startswith(base + ".") and n.endswith(".partial")]
    except OSError:
        return []
