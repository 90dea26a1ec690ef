"""The shipped unit and production config, checked by systemd-analyze and by logship itself."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from logship.cli.codes import EXIT_CONFIG

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "logship.service"
PRODUCTION_CONFIG = ROOT / "systemd" / "logship.toml"
ANALYZE = "/usr/bin/systemd-analyze"
INSTALLED_VENV = "/opt/logship/venv"


def unit_for_this_venv(folder: Path, text: str | None = None) -> Path:
    """The unit with /opt/logship/venv pointing at the venv running the tests (verify wants real binaries)."""
    path = folder / "logship.service"
    path.write_text((text or UNIT.read_text()).replace(INSTALLED_VENV, sys.prefix))
    return path


def verify(unit: Path) -> str:
    """What `systemd-analyze verify` says about `unit` (it exits 0 even on parse warnings)."""
    result = subprocess.run([ANALYZE, "verify", "--man=no", str(unit)], capture_output=True, text=True)
    return (result.stdout + result.stderr).strip() + ("" if result.returncode == 0 else f"\nexit {result.returncode}")


def service_section() -> dict[str, str]:
    """The [Service] section; a repeated key's values joined by newlines, as systemd adds them up."""
    section, values = "", {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = f"{values[key]}\n{value}" if key in values else value
    return values


def test_the_unit_passes_systemd_analyze_verify_without_a_word(tmp_path):
    assert Path(sys.prefix, "bin", "logship").exists()
    assert verify(unit_for_this_venv(tmp_path)) == ""


def test_verify_would_catch_a_broken_unit(tmp_path):
    broken = UNIT.read_text().replace("Type=notify", "Type=notfy")
    assert "Failed to parse service type" in verify(unit_for_this_venv(tmp_path, broken))
    missing = tmp_path / "installed" / "logship.service"
    missing.parent.mkdir()
    missing.write_text(UNIT.read_text().replace(INSTALLED_VENV, "/nonexistent/venv"))
    assert "is not executable" in verify(missing)


def test_the_unit_exposure_is_at_most_1_5_offline():
    result = subprocess.run([ANALYZE, "security", "--offline=true", "--threshold=15", "--no-pager", str(UNIT)],
                            capture_output=True, text=True)
    overall = re.search(r"Overall exposure level for logship\.service: (\d+\.\d)", result.stdout)
    assert overall, result.stdout + result.stderr
    assert float(overall.group(1)) <= 1.5
    assert result.returncode == 0, result.stderr


def test_the_unit_notifies_restarts_on_failure_but_not_on_a_config_error():
    service = service_section()
    assert service["Type"] == "notify"
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == str(EXIT_CONFIG)
    assert re.fullmatch(r"\d+s", service["WatchdogSec"])
    assert " check --config /etc/logship/logship.toml" in service["ExecStartPre"]
    assert service["ExecReload"].splitlines()[-1] == "/bin/kill -HUP $MAINPID"
    # the daemon settles the batch in hand for at most 10 s (Consumer._finish) before it closes
    assert int(service["TimeoutStopSec"].rstrip("s")) >= 20


def test_the_unit_is_locked_down():
    service = service_section()
    assert service["CapabilityBoundingSet"] == ""
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes"
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    for key in ("ConfigurationDirectory", "LogsDirectory", "StateDirectory"):
        assert service[key] == "logship"
    assert "@system-service" in service["SystemCallFilter"]


def test_the_production_config_passes_logship_check_once_installed(tmp_path):
    etc, log, lib = tmp_path / "etc", tmp_path / "log", tmp_path / "lib"
    shutil.copytree(ROOT / "formats", etc / "formats")
    (etc / "broker.password").write_text("secret\n")
    text = PRODUCTION_CONFIG.read_text()
    for installed, here in (("/etc/logship", etc), ("/var/log/logship", log), ("/var/lib/logship", lib)):
        assert installed in text
        text = text.replace(installed, str(here))
    (etc / "logship.toml").write_text(text)
    result = subprocess.run([sys.executable, "-m", "logship.cli", "check", "--config", str(etc / "logship.toml")],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "2 queues, 2 outputs, 2 routes" in result.stdout
    assert "secret" not in result.stdout + result.stderr
