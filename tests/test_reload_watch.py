"""The watcher on the real filesystem: every way editors and deployers save is seen, once."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from logship.service.watch import Watcher, snapshot


class Changes:
    """Counts the watcher's calls; waits for the next one."""

    def __init__(self) -> None:
        self.count = 0
        self._cond = threading.Condition()

    def __call__(self) -> None:
        with self._cond:
            self.count += 1
            self._cond.notify_all()

    def wait_beyond(self, count: int, timeout: float = 1.5) -> bool:
        """Whether a call beyond `count` came within `timeout`."""
        with self._cond:
            return self._cond.wait_for(lambda: self.count > count, timeout=timeout)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A config file next to a formats folder with one format."""
    (tmp_path / "formats").mkdir()
    (tmp_path / "formats" / "line.j2").write_text("v1 {{ record.queue }}\n")
    (tmp_path / "logship.toml").write_text("# config\n")
    return tmp_path


@pytest.fixture
def watching(folder: Path) -> Iterator[Callable[..., tuple[Watcher, Changes]]]:
    """Start a watcher on `folder` (or given paths); stopped at the end of the test."""
    started: list[Watcher] = []

    def start(config: Path | None = None, formats: Path | None = None) -> tuple[Watcher, Changes]:
        changes = Changes()
        watcher = Watcher(str(config or folder / "logship.toml"), str(formats or folder / "formats"),
                          changes, debounce=0.1, poll=60)  # events alone must do it
        watcher.start()
        started.append(watcher)
        return watcher, changes
    yield start
    for watcher in started:
        watcher.stop()


def save_in_place(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def save_by_rename(path: Path, text: str) -> None:
    temp = path.with_name(path.name + ".tmp~")
    temp.write_text(text)
    os.replace(temp, path)


def save_by_delete_and_recreate(path: Path, text: str) -> None:
    path.unlink()
    path.write_text(text)


@pytest.mark.parametrize("save", [save_in_place, save_by_rename, save_by_delete_and_recreate])
def test_each_editor_save_of_a_format_is_seen_once(folder, watching, save):
    _watcher, changes = watching()
    save(folder / "formats" / "line.j2", "v2 {{ record.queue }}\n")
    assert changes.wait_beyond(0), "the save was not seen"
    assert not changes.wait_beyond(1, timeout=0.6), "one save, several reloads"


@pytest.mark.parametrize("save", [save_in_place, save_by_rename, save_by_delete_and_recreate])
def test_each_editor_save_of_the_config_is_seen(folder, watching, save):
    _watcher, changes = watching()
    save(folder / "logship.toml", "# config, edited\n")
    assert changes.wait_beyond(0)


def test_a_save_with_the_same_content_and_unrelated_files_cause_no_reload(folder, watching):
    _watcher, changes = watching()
    save_by_rename(folder / "formats" / "line.j2", "v1 {{ record.queue }}\n")
    for i in range(20):
        (folder / "logship.stderr").write_text(f"own log line {i}\n")  # the daemon's own log nearby
    (folder / "formats" / ".line.j2.swp").write_text("vim swap file")
    assert not changes.wait_beyond(0, timeout=1.0)


def test_a_new_and_a_deleted_format_are_seen(folder, watching):
    _watcher, changes = watching()
    (folder / "formats" / "new.j2").write_text("new\n")
    assert changes.wait_beyond(0)
    (folder / "formats" / "line.j2").unlink()
    assert changes.wait_beyond(1)


def configmap(folder: Path, version: int, files: dict[str, str]) -> None:
    """Publish `files` the way the kubelet updates a ConfigMap volume: a `..data` symlink swap."""
    data = folder / f"..{version}"
    data.mkdir()
    for name, text in files.items():
        (data / name).write_text(text)
        link = folder / name
        if not link.is_symlink():
            link.symlink_to(Path("..data") / name)
    (folder / "..data_tmp").symlink_to(data.name)
    os.replace(folder / "..data_tmp", folder / "..data")


def test_a_configmap_symlink_swap_of_the_formats_is_seen(tmp_path, watching):
    formats = tmp_path / "k8s" / "formats"
    formats.mkdir(parents=True)
    configmap(formats, 1, {"line.j2": "v1\n"})
    (tmp_path / "k8s" / "logship.toml").write_text("# config\n")
    before = snapshot(str(tmp_path / "k8s" / "logship.toml"), str(formats))
    _watcher, changes = watching(tmp_path / "k8s" / "logship.toml", formats)
    configmap(formats, 2, {"line.j2": "v2\n"})
    assert changes.wait_beyond(0)
    assert snapshot(str(tmp_path / "k8s" / "logship.toml"), str(formats))["line.j2"] != before["line.j2"]


def test_a_configmap_swap_holding_config_and_formats_folder_is_seen_again_and_again(tmp_path, watching):
    mount = tmp_path / "etc"
    mount.mkdir()
    def publish(version: int) -> None:
        data = mount / f"..{version}"
        (data / "formats").mkdir(parents=True)
        (data / "formats" / "line.j2").write_text(f"v{version}\n")
        (data / "logship.toml").write_text(f"# v{version}\n")
        for name in ("formats", "logship.toml"):
            if not (mount / name).is_symlink():
                (mount / name).symlink_to(Path("..data") / name)
        (mount / "..data_tmp").symlink_to(data.name)
        os.replace(mount / "..data_tmp", mount / "..data")
    publish(1)
    _watcher, changes = watching(mount / "logship.toml", mount / "formats")
    for version in range(2, 5):
        before = changes.count
        publish(version)
        assert changes.wait_beyond(before), f"swap to version {version} not seen"


def test_a_file_still_being_written_is_waited_for(folder, watching):
    _watcher, changes = watching()
    path = folder / "formats" / "line.j2"
    with open(path, "w") as f:
        f.write("v2 {{ record")
        f.flush()
        time.sleep(0.5)  # longer than the debounce, but the file is still open for writing
        assert changes.count == 0, "read before the writer closed the file"
        f.write(".queue }}\n")
    assert changes.wait_beyond(0)
