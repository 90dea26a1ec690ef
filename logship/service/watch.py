"""Watching the formats folder and the config file; debounced, content hashes decide."""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from ..render.formats import SUFFIX

log = logging.getLogger("logship")

DEBOUNCE = 0.15   # seconds of quiet after the last event before the files are read
MAX_WAIT = 2.0    # a file still open for writing is waited for at most this long
POLL = 2.0        # hashes are compared this often even without events (missed events, NFS)

Snapshot = dict[str, str]
# reads change nothing, and our own reads (the daemon's, the snapshot's) must not look like saves
IGNORED = {"opened", "closed_no_write", "attrib"}


def _digest(path: Path) -> str:
    """The SHA-256 of a file's bytes, or a marker when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as error:
        return f"unreadable: {error.strerror}"


def snapshot(config_file: str, formats_dir: str) -> Snapshot:
    """What a reload would read: the config's and every format's content hash, by path."""
    state = {"config": _digest(Path(config_file))}
    folder = Path(formats_dir)
    for path in sorted(folder.glob("*" + SUFFIX)):
        if not path.name.startswith("."):
            state[path.name] = _digest(path)
    state["formats folder"] = os.path.realpath(folder) if folder.is_dir() else "missing"
    return state


class _Events(FileSystemEventHandler):
    """Passes the events that may matter to the watcher; the rest (log files, ...) are dropped."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in IGNORED:
            return
        paths = [os.fsdecode(event.src_path), os.fsdecode(event.dest_path or b"")]
        if any(self.watcher.relevant(p) for p in paths if p):
            self.watcher.notice(event)


class Watcher:
    """Calls `on_change` (from its own thread) when the config or a format changes on disk.

    Editors save in place, write a temp file and rename it, or delete and recreate; Kubernetes
    and Ansible swap a `..data` symlink to a new folder. Event kinds differ between them, so
    any event near the files only starts the debounce; the content hashes decide.
    """

    def __init__(self, config_file: str, formats_dir: str, on_change: Callable[[], None],
                 initial: Snapshot | None = None, debounce: float = DEBOUNCE, poll: float = POLL) -> None:
        self.config_file = os.path.abspath(config_file)
        self.on_change, self.debounce, self.poll = on_change, debounce, poll
        self.formats_dir = os.path.abspath(formats_dir)
        self.last = initial if initial is not None else self._snapshot()
        self._observer: BaseObserver | None = None  # made at start(): watchdog makes a thread with it
        self._watches: dict[str, ObservedWatch] = {}
        self._watches_lock = threading.Lock()  # retarget() comes from the consumer's thread
        self._wake = threading.Condition()
        self._due: float | None = None      # when to read, once things are quiet
        self._first: float | None = None    # the first event not yet read
        self._writing: set[str] = set()     # files modified but not closed yet
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="logship-watch", daemon=True)

    def _snapshot(self) -> Snapshot:
        return snapshot(self.config_file, self.formats_dir)

    def _folders(self) -> set[str]:
        """The real directories to watch: the formats folder, its parent, the config's folder."""
        folders = {os.path.realpath(os.path.dirname(self.config_file)),
                   os.path.realpath(os.path.dirname(self.formats_dir))}
        if os.path.isdir(self.formats_dir):
            folders.add(os.path.realpath(self.formats_dir))
        return folders

    def relevant(self, path: str) -> bool:
        """Whether an event at `path` may change what a reload reads."""
        if os.path.dirname(path) == os.path.realpath(self.formats_dir):
            return True
        name = os.path.basename(path)
        # `..data`, `..data_tmp`, `..2024_01_01...`: the Kubernetes ConfigMap swap
        return name.startswith("..") or name in (os.path.basename(self.config_file),
                                                 os.path.basename(self.formats_dir))

    def start(self) -> None:
        """Start watching."""
        self._observer = Observer()
        self._rewatch()
        self._observer.start()
        self._thread.start()

    def stop(self) -> None:
        """Stop watching and join the threads."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def retarget(self, formats_dir: str) -> None:
        """Watch another formats folder (the config's `formats.dir` changed)."""
        self.formats_dir = os.path.abspath(formats_dir)
        self._rewatch()

    def busy(self) -> bool:
        """Whether files changed within the debounce or are still being written: read later."""
        return self._due is not None

    def notice(self, event: FileSystemEvent) -> None:
        """An event that may matter: read the files once things are quiet."""
        now = time.monotonic()
        path = os.fsdecode(event.src_path)
        with self._wake:
            if event.event_type == "modified" and not event.is_directory:
                self._writing.add(path)
            elif event.event_type in ("closed", "deleted", "moved"):
                self._writing.discard(path)
            self._first = self._first or now
            self._due = now + self.debounce
            self._wake.notify()

    def _run(self) -> None:
        """Wait for quiet (or the poll interval), compare hashes, call `on_change` on a difference."""
        while True:
            with self._wake:
                # one wait at a time: each event moves the deadline, so the timeout is recomputed
                self._wake.wait(timeout=self._timeout())
                if self._stopping:
                    return
                if self._due is not None and not self._ready():
                    continue  # still settling, or a file is still being written
                self._due = self._first = None
                self._writing.clear()
            try:
                self._check()
            except Exception:  # the watcher must outlive any surprise on disk
                log.exception("watching the formats failed; retrying")

    def _ready(self) -> bool:
        """Quiet long enough, and no file half written (or waited for long enough)."""
        if self._due is None:
            return False
        now = time.monotonic()
        return now >= self._due and (not self._writing or now - (self._first or now) >= MAX_WAIT)

    def _timeout(self) -> float:
        """How long to sleep: until the debounce ends, else the poll interval."""
        if self._due is None:
            return self.poll
        return max(self._due - time.monotonic(), 0.05)

    def _check(self) -> None:
        """Compare the content hashes with the last ones; re-watch a swapped folder."""
        current = self._snapshot()
        if current.get("formats folder") != self.last.get("formats folder"):
            self._rewatch()
        if current != self.last:
            changed = sorted(k for k in current.keys() | self.last.keys() if current.get(k) != self.last.get(k))
            self.last = current
            log.info("change on disk", extra={"changed": changed})
            self.on_change()

    def _rewatch(self) -> None:
        """Watch the real folders of now; drop watches on folders no longer in play."""
        with self._watches_lock:
            if self._observer is not None:
                self._schedule(self._observer, self._folders())

    def _schedule(self, observer: BaseObserver, wanted: set[str]) -> None:
        """Make the observer's watches exactly `wanted`."""
        for folder in set(self._watches) - wanted:
            try:
                observer.unschedule(self._watches.pop(folder))
            except (KeyError, OSError):
                pass
        for folder in wanted - set(self._watches):
            try:
                self._watches[folder] = observer.schedule(_Events(self), folder)
            except OSError as error:
                log.warning("cannot watch a folder; polling it", extra={"folder": folder, "error": str(error)})
