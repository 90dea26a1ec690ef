"""Outputs: one module per kind behind one small interface."""
from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from ..config.load import Config, Route
from ..config.outputs import FileOutput, Output, SyslogOutput
from ..config.schema import key_error


class Sink(Protocol):
    """Where rendered records go. Only `flush` promises anything is held.

    A sink may also have `check(record)`, called for each record before anything of its
    message is written, raising RecordRefused to quarantine the message instead; a sink
    without one (or with None) has nothing to check.
    """

    name: str

    def write(self, record: dict[str, Any], line: str, route: Route | None = None) -> None:
        """Take one rendered record (routed by `route`); may buffer. Never blocks for long."""

    def flush(self) -> None:
        """Make everything taken so far durable, or raise OutputError (the caller retries)."""

    def reopen(self) -> None:
        """Let go of open files or connections and open them anew (SIGHUP, logrotate)."""

    def close(self) -> None:
        """Release everything; records not flushed yet are not promised."""


def build_sink(output: Output) -> Sink:
    """The sink for one configured output."""
    if isinstance(output, FileOutput):
        from .file.sink import FileSink
        return FileSink.from_config(output)
    if isinstance(output, SyslogOutput):
        from .syslog.sink import SyslogSink
        return SyslogSink.from_config(output)
    raise ValueError(f"no sink for output type {output.type!r}")


def check(config: Config) -> None:
    """Each output's table as its sink reads it; ConfigError naming `outputs[i].key` when it cannot."""
    for i, output in enumerate(config.outputs):
        try:
            _check_output(output)
        except ValueError as error:
            keys = {f.name for f in dataclasses.fields(output)}
            raise key_error(str(config.file), f"outputs[{i}]", error, keys) from None


def _check_output(output: Output) -> None:
    """Raise ValueError("key: problem") for what the output's sink cannot work with."""
    if isinstance(output, FileOutput):
        from .file.paths import PathTemplate, is_template
        if is_template(output.path):
            PathTemplate(output.path)
    elif isinstance(output, SyslogOutput):
        from .syslog.message import check as check_syslog
        check_syslog(output)
