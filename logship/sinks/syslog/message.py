"""From a rendered record to the framed bytes of one syslog message, as a syslog output is configured."""
from __future__ import annotations

import calendar
import os
import re
import socket
import ssl
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jinja2 import Template, TemplateSyntaxError

from . import transport
from ...render.budget import BUDGET, RenderTimeout
from ...render.formats import ENV
from .wire import (FACILITIES, MIN_SIZE, NIL, OUTCOME_SEVERITY, SEVERITIES, fit, frame,
                          rfc3164_head, rfc5424_head, sd_name_problem, structured_data)

if TYPE_CHECKING:
    from ...config.load import Route
    from ...config.outputs import SyslogOutput

#: MailerQ's attempt time: UTC, no zone
_MAILERQ_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)")


def check(output: SyslogOutput) -> None:
    """Raise ValueError("key: problem") for anything wrong in a [[outputs]] table of type syslog."""
    address = transport.parse_address(output.address)
    if output.facility not in FACILITIES:
        raise ValueError(f"facility: must be one of {', '.join(FACILITIES)}, got {output.facility!r}")
    for outcome, severity in output.severities.items():
        if outcome not in OUTCOME_SEVERITY:
            raise ValueError(f"severities: {outcome!r} is not an outcome ({', '.join(OUTCOME_SEVERITY)})")
        if severity not in SEVERITIES:
            raise ValueError(f"severities: {severity!r} is not a severity ({', '.join(SEVERITIES)})")
    _check_templates(output)
    if output.max_size is not None and not MIN_SIZE <= output.max_size <= transport.MAX_SIZES[address.scheme]:
        raise ValueError(f"max_size: must be from {MIN_SIZE} to {transport.MAX_SIZES[address.scheme]} "
                         f"for {address.scheme}")
    if output.framing is not None and address.datagram:
        raise ValueError("framing: only TCP and TLS streams are framed; datagrams carry one message each")
    _check_tls(output, address)


def _check_templates(output: SyslogOutput) -> None:
    """MSGID and STRUCTURED-DATA: valid names, templates that compile."""
    sources = {"msgid": output.msgid}
    for sd_id, params in output.structured_data.items():
        problem = sd_name_problem(sd_id, sd_id=True)
        if problem:
            raise ValueError(f"structured_data: {problem}")
        for name, source in params.items():
            problem = sd_name_problem(name)
            if problem:
                raise ValueError(f"structured_data: {sd_id}: {problem}")
            sources[f"structured_data.{sd_id}.{name}"] = source
    for key, source in sources.items():
        try:
            ENV.from_string(source)
        except TemplateSyntaxError as error:
            raise ValueError(f"{key}: invalid template (line {error.lineno}): {error.message}") from None


def _check_tls(output: SyslogOutput, address: transport.Address) -> None:
    """TLS keys only with tls://, and the files must load."""
    given = [k for k in ("tls_ca", "tls_cert", "tls_key", "tls_server_name") if getattr(output, k)]
    if address.scheme != "tls":
        if given or not output.tls_verify:
            raise ValueError(f"{(given or ['tls_verify'])[0]}: only for tls:// addresses")
        return
    if output.tls_key and not output.tls_cert:
        raise ValueError("tls_key: needs tls_cert (the client certificate)")
    try:
        transport.tls_context(output.tls_ca, output.tls_cert, output.tls_key, output.tls_verify)
    except (OSError, ssl.SSLError) as error:
        key = "tls_cert" if output.tls_cert and "cert" in str(error).lower() else "tls_ca"
        raise ValueError(f"{key}: cannot load: {error.strerror or error}") from None


class MessageBuilder:
    """Builds one framed syslog message per record: header from the config, MSG from the format."""

    def __init__(self, output: SyslogOutput) -> None:
        self.address = transport.parse_address(output.address)
        self.rfc5424 = output.protocol == "rfc5424"
        self.facility = FACILITIES[output.facility]
        self.severities = {k: SEVERITIES[v] for k, v in {**OUTCOME_SEVERITY, **output.severities}.items()}
        self.hostname = output.hostname or socket.gethostname()
        self.app_name, self.procid = output.app_name, output.procid or str(os.getpid())
        self.msgid = ENV.from_string(output.msgid)
        self.sd = [(sd_id, [(name, ENV.from_string(src)) for name, src in params.items()])
                   for sd_id, params in output.structured_data.items()]
        self.max_size = output.max_size or transport.DEFAULT_SIZES[self.address.scheme]
        self.framing = None if self.address.datagram else (output.framing or "octet-counting")
        self.received_time = output.timestamp == "received"

    def build(self, record: dict[str, Any], line: str, route: Route | None = None) -> bytes:
        """The framed message for one record, never longer than max_size (before framing)."""
        pri = self.facility * 8 + self.severity(record, route)
        epoch = self.epoch(record)
        if not self.rfc5424:
            # on a local socket (/dev/log) RFC 3164 goes without HOSTNAME, as syslog(3) writes it
            hostname = None if self.address.scheme == "unix" else self.hostname
            head = rfc3164_head(pri, epoch, hostname, self.app_name, self.procid)
            return frame(fit(head, line, self.max_size) or b"", self.framing)
        msgid = _render(self.msgid, record) or NIL
        sd = structured_data([(sd_id, [(name, _render(t, record)) for name, t in params])
                              for sd_id, params in self.sd])
        head = rfc5424_head(pri, epoch, self.hostname, self.app_name, self.procid, msgid, sd)
        message = fit(head, line, self.max_size)
        if message is None:  # STRUCTURED-DATA alone overflows max_size: the MSG matters more
            head = rfc5424_head(pri, epoch, self.hostname, self.app_name, self.procid, msgid, NIL)
            message = fit(head, line, self.max_size) or b""
        return frame(message, self.framing)

    def severity(self, record: dict[str, Any], route: Route | None) -> int:
        """The route's severity if it sets one, else the one of the record's outcome."""
        if route is not None and getattr(route, "severity", None):
            return SEVERITIES[route.severity]  # type: ignore[index]
        return self.severities.get(record["record"].get("outcome"), SEVERITIES["info"])

    def epoch(self, record: dict[str, Any]) -> float:
        """When the attempt happened (MailerQ's UTC `time`), else when logship received it."""
        received = float(record["record"].get("received_epoch") or time.time())
        if self.received_time:
            return received
        match = _MAILERQ_TIME.fullmatch(str(record["attempt"].get("time") or ""))
        if match is None:
            return received
        try:
            return float(calendar.timegm(datetime(*map(int, match.groups())).timetuple()))
        except ValueError:  # 2026-02-30 and the like
            return received


def _render(template: Template, record: dict[str, Any]) -> str:
    """A header template's text; a template that raises or passes a limit gives '' (the record itself still goes)."""
    try:
        return BUDGET.run(template.render, record)  # timed like a format: formats.render_timeout
    except (Exception, RenderTimeout):  # a user's template may raise anything; the MSG is what matters
        return ""
