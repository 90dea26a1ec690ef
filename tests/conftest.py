"""Fixtures: the samples, a private RabbitMQ node, configs in temporary folders, leak checks."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import HealthCheck, settings

from broker import SERVER, RabbitNode
from helpers import scaled
from cluster import RabbitCluster, TestCA

ROOT = Path(__file__).resolve().parent.parent

# Property tests (tests/test_properties.py): few examples, derandomized, so a run is quick on a
# loaded 2-core machine and never flakes (the same examples every time, no example database).
# HYPOTHESIS_PROFILE=explore searches much further, with fresh examples each run.
settings.register_profile("logship", max_examples=60, derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                 HealthCheck.function_scoped_fixture])
settings.register_profile("explore", max_examples=3000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                 HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "logship"))
SAMPLES = ROOT / "tests" / "samples"
FORMATS = ROOT / "formats"


def pytest_addoption(parser: pytest.Parser) -> None:
    """--figures: after the fault suite (tests/faults), write its table into docs/guarantees.md."""
    parser.addoption("--figures", action="store_true",
                     help="write the fault suite's figures into docs/guarantees.md at the end of the run")


@pytest.fixture(scope="session")
def rabbit() -> Iterator[RabbitNode]:
    """The test run's own RabbitMQ node (started once, on free loopback ports)."""
    if not Path(SERVER).exists():
        pytest.fail("rabbitmq-server is not installed: run the suite with ./tests/run")
    node = RabbitNode()
    node.start()
    yield node
    node.cleanup()


class ClusterBoot(threading.Thread):
    """The run's cluster, booting on a thread of its own from the end of collection on.

    Its three nodes boot one after the other (16 s on an idle 2-core machine, more when busy).
    The tests that use it come after the fault suite, whose scenarios spend most of their time
    waiting out a fault: the boot overlaps them instead of holding up the first cluster test.
    """

    def __init__(self) -> None:
        super().__init__(name="cluster-boot", daemon=True)
        self.folder = Path(tempfile.mkdtemp(prefix="logship-ca-"))
        self.nodes: RabbitCluster | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.nodes = RabbitCluster(3, TestCA(self.folder))
            self.nodes.start()
        except BaseException as error:  # raised by ready(), in the test that asks for the cluster
            self.error = error

    def ready(self) -> RabbitCluster:
        """The cluster once it is up; its boot's error if it failed."""
        self.join()
        if self.error is not None:
            raise self.error
        assert self.nodes is not None
        return self.nodes

    def cleanup(self) -> None:
        """Stop whatever nodes were started and remove the folders."""
        self.join()
        if self.nodes is not None:
            self.nodes.cleanup()
        shutil.rmtree(self.folder, ignore_errors=True)


BOOT = pytest.StashKey[ClusterBoot]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start booting the cluster now when a collected test will use it (see ClusterBoot)."""
    options = session.config.option
    if options.collectonly or getattr(options, "setuponly", False) or getattr(options, "setupplan", False):
        return
    if not Path(SERVER).exists() or not any("cluster" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    boot = session.config.stash[BOOT] = ClusterBoot()
    boot.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the cluster (booted or booting) at the end of the run."""
    boot = session.config.stash.get(BOOT, None)
    if boot is not None:
        boot.cleanup()


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> RabbitCluster:
    """Three RabbitMQ nodes joined into one cluster, with TLS listeners (tests/cluster.py); one per run."""
    if not Path(SERVER).exists():
        pytest.fail("rabbitmq-server is not installed: run the suite with ./tests/run")
    boot = request.config.stash.get(BOOT, None)
    if boot is None:  # not foreseen at collection (a test asking for it by getfixturevalue)
        boot = request.config.stash[BOOT] = ClusterBoot()
        boot.start()
    return boot.ready()


@pytest.fixture
def vhost_url(rabbit: RabbitNode) -> str:
    """The AMQP URL of a fresh virtual host on the test node."""
    return rabbit.vhost_url(rabbit.new_vhost())


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder holding a copy of the shipped formats, as a config would point to."""
    shutil.copytree(FORMATS, tmp_path / "formats")
    return tmp_path


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a thread running (the watchdog project's habit)."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    for thread in leaked:
        thread.join(timeout=scaled(2))  # a thread on its way out may take longer on a loaded host
    leaked = [t.name for t in leaked if t.is_alive()]
    assert not leaked, f"threads left running: {leaked}"


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel pip builds from a copy of the package's files (a build writes build/ and egg-info where it runs)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "logship", src / "logship", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "docs", src / "docs")
    dist = tmp_path_factory.mktemp("dist")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LOGSHIP_CONFIG", "VIRTUAL_ENV")}
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps",
                          "-w", str(dist), str(src)], cwd=dist, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    (built,) = dist.glob("logship-*.whl")
    return built


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for the test (the suite runs as root), unmounted after."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)
