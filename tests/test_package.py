"""The wheel, installed outside the checkout: init, check, run; and the daemon at the lowest versions pyproject allows."""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.parse
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from packaging.requirements import Requirement

from helpers import RunningDaemon, expected_attempts, line_count, metrics_url, publish, scrape, traffic, wait_for
from logship import __version__

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "logship" / "shipped"
# Venvs are kept between runs (outside the checkout), one per pyproject and Python version:
# installing the dependencies is most of the cost, and only a pyproject change alters them.
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "logship-test" / "venvs"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that points at the checkout or a config."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LOGSHIP_CONFIG", "VIRTUAL_ENV")}
    return {**env, **extra}


def run(*argv: str | Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a program outside the checkout and keep its output."""
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=clean_env(**env), capture_output=True, text=True)


def pip(venv: Path, *args: str | Path) -> None:
    """`pip` of a venv; fail with its output."""
    out = run(venv / "bin" / "python", "-m", "pip", "--disable-pip-version-check", *args, cwd=venv)
    assert out.returncode == 0, out.stdout + out.stderr


@contextmanager
def cached_venv(name: str, wheel: Path, pins: list[str] | None = None) -> Iterator[Path]:
    """A venv holding the wheel: with the dependencies its metadata asks for, or with exactly `pins`.

    Made once per pyproject (the first run installs everything from the index); later runs
    put the new wheel in with --no-deps and `pip check` that its requirements still hold.
    Held under a lock, as other test runs on the machine may want the same venv.
    """
    key = hashlib.sha256(b"\n".join([sys.version.encode(), (ROOT / "pyproject.toml").read_bytes(),
                                     *(p.encode() for p in pins or ())])).hexdigest()[:16]
    CACHE.mkdir(parents=True, exist_ok=True)
    venv = CACHE / f"{name}-{key}"
    with open(CACHE / f"{name}-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".ready").exists():
            shutil.rmtree(venv, ignore_errors=True)
            prune(name, keep=venv)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            if pins:
                pip(venv, "install", "-q", "--only-binary", ":all:", *pins)
                pip(venv, "install", "-q", "--no-deps", wheel)
            else:
                pip(venv, "install", "-q", wheel)
            (venv / ".ready").touch()
        else:
            pip(venv, "install", "-q", "--no-deps", "--force-reinstall", wheel)
        pip(venv, "check")
        yield venv


def prune(name: str, keep: Path) -> None:
    """Remove the venvs of earlier pyprojects that no test run is using (their lock is free)."""
    for old in CACHE.glob(f"{name}-*.lock"):
        venv = old.with_suffix("")
        if venv == keep:
            continue
        with open(old, "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            shutil.rmtree(venv, ignore_errors=True)  # the lock file stays: another run may hold it open


def lowest_pins() -> list[str]:
    """pyproject's dependencies pinned to their lower bounds (`pika>=1.3,<1.5` -> `pika==1.3`)."""
    pins = []
    for line in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(line)
        (lowest,) = [s.version for s in requirement.specifier if s.operator == ">="]
        pins.append(f"{requirement.name}=={lowest}")
    return pins


@pytest.fixture(scope="module")
def installed(wheel: Path) -> Iterator[Path]:
    """A venv outside the checkout with the wheel and its dependencies from the index."""
    with cached_venv("wheel", wheel) as venv:
        yield venv


@pytest.fixture(scope="module")
def lowest(wheel: Path) -> Iterator[Path]:
    """A venv with the wheel and every dependency at the lowest version pyproject allows."""
    with cached_venv("lowest", wheel, lowest_pins()) as venv:
        yield venv


@pytest.fixture
def initialised(installed: Path, tmp_path: Path) -> Path:
    """`logship init` run into a fresh folder by the installed logship."""
    out = run(installed / "bin" / "logship", "init", tmp_path / "etc", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return tmp_path / "etc"


def runnable(config: Path, url: str) -> None:
    """Point an initialised config at the test broker, with its files in its own folder and metrics on a free port."""
    base = config.parent.parent
    text = config.read_text()
    text = re.sub(r'(?m)^url = ".*"$', f'url = "{url}"', text)
    text = text.replace("/var/log/logship", str(base / "log")).replace("/var/lib/logship", str(base / "lib"))
    text = re.sub(r'(?m)^listen = ".*"$', 'listen = "127.0.0.1:0"', text)
    config.write_text(text)
    (config.parent / "broker.password").write_text(urllib.parse.urlsplit(url).password + "\n")
    (base / "lib").mkdir(exist_ok=True)


def wait_for_records(daemon: RunningDaemon, path: Path, count: int) -> None:
    """Wait until `path` holds `count` lines; fail at once with the daemon's log if it exits."""
    def written() -> bool:
        assert daemon.process.poll() is None, daemon.log_path.read_text()[-3000:]
        return line_count(path) >= count
    wait_for(written, what=f"{count} records in {path}")


def test_the_wheel_carries_the_formats_example_config_unit_logrotate_samples_docs_and_license(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("formats", "systemd"):
        for path in (ROOT / folder).iterdir():
            assert f"logship/shipped/{folder}/{path.name}" in names
    for path in (ROOT / "tests" / "samples").glob("*.json"):
        assert (f"logship/shipped/samples/{path.name}" in names) == path.is_symlink(), path.name
    data = f"logship-{__version__}.data/data/share/doc/logship"
    assert {f"{data}/README.md", *(f"{data}/docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))} <= names
    assert f"logship-{__version__}.dist-info/licenses/LICENSE" in names
    assert wheel.name == f"logship-{__version__}-py3-none-any.whl"


def test_the_top_level_formats_and_systemd_are_the_packaged_files_not_copies(wheel):
    for folder in ("formats", "systemd"):
        assert (ROOT / folder).is_symlink() and (ROOT / folder).resolve() == SHIPPED / folder
        packaged = {n: zipfile.ZipFile(wheel).read(n) for n in zipfile.ZipFile(wheel).namelist()
                    if n.startswith(f"logship/shipped/{folder}/")}
        top = {f"logship/shipped/{folder}/{p.name}": p.read_bytes() for p in (ROOT / folder).iterdir()}
        assert packaged == top


def test_the_installed_logship_is_the_wheel_not_the_checkout(installed, tmp_path):
    out = run(installed / "bin" / "logship", "--version", cwd=tmp_path)
    assert out.stdout.strip() == f"logship {__version__}"
    where = run(installed / "bin" / "python", "-c", "import logship; print(logship.__file__)", cwd=tmp_path)
    assert where.stdout.startswith(str(installed)), where.stdout + where.stderr


def test_init_writes_a_config_with_the_shipped_formats_that_check_accepts_once_the_password_is_in_place(
        installed, initialised, tmp_path):
    assert sorted(p.name for p in (initialised / "formats").iterdir()) == sorted(
        p.name for p in (ROOT / "formats").iterdir())
    assert f'dir = "{initialised}/formats"' in (initialised / "logship.toml").read_text()
    config = str(initialised / "logship.toml")
    # before the password file exists, check names it (run would too) rather than passing a
    # config whose URL names a user without a password
    out = run(installed / "bin" / "logship", "check", cwd=tmp_path, LOGSHIP_CONFIG=config)
    assert out.returncode == 78 and f"broker.password_file: cannot read {initialised}/broker.password" in out.stderr
    (initialised / "broker.password").write_text("s3cret\n")
    out = run(installed / "bin" / "logship", "check", cwd=tmp_path, LOGSHIP_CONFIG=config)
    assert out.returncode == 0, out.stderr
    assert "2 queues, 2 outputs, 2 routes" in out.stdout


def test_init_leaves_existing_files_alone_unless_forced(installed, initialised, tmp_path):
    own = initialised / "formats" / "json.j2"
    own.write_text("{{ message.recipient }}")
    again = run(installed / "bin" / "logship", "init", initialised, cwd=tmp_path)
    assert again.returncode == 1 and "not overwriting" in again.stderr and "--force" in again.stderr
    assert own.read_text() == "{{ message.recipient }}"
    forced = run(installed / "bin" / "logship", "init", "--force", initialised, cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert own.read_text() == (ROOT / "formats" / "json.j2").read_text()


def test_init_unit_runs_the_installed_logship_and_passes_systemd_analyze_verify(installed, tmp_path):
    out = run(installed / "bin" / "logship", "init", "--unit", cwd=tmp_path)
    command = installed / "bin" / "logship"
    assert f"ExecStart={command} run --config /etc/logship/logship.toml" in out.stdout
    assert "/opt/logship/venv" not in out.stdout
    # the pages it names are there: the wheel put them in the venv
    documentation = re.findall(r"^Documentation=file:(\S+)$", out.stdout, re.M)
    assert len(documentation) == 3 and all(Path(page).is_file() for page in documentation), documentation
    assert all(page.startswith(f"{installed}/share/doc/logship/") for page in documentation)
    unit = tmp_path / "logship.service"
    unit.write_text(out.stdout)
    verify = subprocess.run(["/usr/bin/systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True)
    assert (verify.stdout + verify.stderr).strip() == ""
    logrotate = run(installed / "bin" / "logship", "init", "--logrotate", cwd=tmp_path)
    assert logrotate.stdout == (ROOT / "systemd" / "logship.logrotate").read_text()


def test_a_missing_config_is_a_config_error_that_says_how_to_make_one(installed, tmp_path):
    out = run(installed / "bin" / "logship", "check", cwd=tmp_path, LOGSHIP_CONFIG=str(tmp_path / "none" / "logship.toml"))
    assert out.returncode == 78 and f"`logship init {tmp_path / 'none'}`" in out.stderr
    if not Path("/etc/logship/logship.toml").exists():
        out = run(installed / "bin" / "logship", "run", cwd=tmp_path)
        assert out.returncode == 78 and "/etc/logship/logship.toml" in out.stderr and "logship init" in out.stderr


@pytest.mark.broker
def test_the_installed_logship_runs_the_initialised_config_against_the_broker(installed, initialised, vhost_url):
    config = initialised / "logship.toml"
    runnable(config, vhost_url)
    events = traffic(200)
    publish(vhost_url, events)
    deliveries = initialised.parent / "log" / "deliveries.log"
    with RunningDaemon(config, command=str(installed / "bin" / "logship")) as daemon:
        wait_for_records(daemon, deliveries, len(expected_attempts(events)))
        assert scrape(metrics_url(daemon))[("logship_broker_connected", ())] == 1
        assert daemon.stop() == 0
    assert line_count(deliveries) == len(expected_attempts(events))


@pytest.mark.broker
def test_at_the_lowest_dependency_versions_the_daemon_runs_serves_metrics_and_replays(lowest, tmp_path, vhost_url):
    versions = run(lowest / "bin" / "python", "-m", "pip", "list", "--format=freeze", cwd=tmp_path).stdout.lower()
    for pin in lowest_pins():
        name, version = pin.split("==")
        assert re.search(rf"^{name.replace('-', '[-_]')}=={re.escape(version)}(\.0)*$", versions, re.M), pin
    assert run(lowest / "bin" / "logship", "init", tmp_path / "etc", cwd=tmp_path).returncode == 0
    config = tmp_path / "etc" / "logship.toml"
    runnable(config, vhost_url)
    events = traffic(200)
    publish(vhost_url, events)
    deliveries = tmp_path / "log" / "deliveries.log"
    with RunningDaemon(config, command=str(lowest / "bin" / "logship")) as daemon:
        wait_for_records(daemon, deliveries, len(expected_attempts(events)))
        samples = scrape(metrics_url(daemon))
        assert samples[("logship_broker_connected", ())] == 1
        assert sum(v for (name, _), v in samples.items() if name == "logship_records_written_total") > 0
        assert daemon.stop() == 0
        # pika at its lowest still has the internals amqp_frames replaces
        assert not [m for m in daemon.messages() if "pika's internals" in m]
    assert line_count(deliveries) == len(expected_attempts(events))
    bodies = subprocess.run([sys.executable, str(ROOT / "bench" / "peers" / "mailerq_results.py"), "50",
                             "--bodies-only", "--queue", "results"], check=True, capture_output=True).stdout
    replay = subprocess.run([str(lowest / "bin" / "logship"), "replay", "--config", str(config), "-"],
                            input=bodies, capture_output=True, cwd=tmp_path, env=clean_env())
    assert replay.returncode == 0, replay.stderr
    assert b"replayed 50 messages, 0 quarantined" in replay.stderr
    assert line_count(deliveries) > len(expected_attempts(events))
