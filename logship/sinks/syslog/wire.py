"""Syslog messages on the wire: RFC 5424 and RFC 3164 headers, STRUCTURED-DATA, size, framing."""
from __future__ import annotations

import re
import time
from datetime import datetime, timezone

from ...config.outputs import SEVERITY_NAMES
from ...render.formats import one_line

FACILITIES = {name: code for code, name in enumerate(
    ["kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
     "ftp", "ntp", "security", "console", "solaris-cron"] + [f"local{i}" for i in range(8)])}
SEVERITIES = {name: code for code, name in enumerate(SEVERITY_NAMES)}
#: the severity of a record by its outcome, unless the route or the output says otherwise
OUTCOME_SEVERITY = {"delivered": "info", "deferred": "notice", "bounced": "warning",
                    "expired": "err", "failed": "err"}
#: appended to a message cut down to the output's max_size
TRUNCATION_MARKER = "...[truncated]"
#: the smallest max_size accepted: the longest possible RFC 5424 header fits with room to spare
MIN_SIZE = 1024
#: SD-IDs registered with IANA (RFC 5424 section 7); every other SD-ID needs an @ (name@number)
REGISTERED_SD_IDS = frozenset({"timeQuality", "origin", "meta"})
NIL = "-"
# RFC 5424 header field limits (section 6): HOSTNAME, APP-NAME, PROCID, MSGID
LIMITS = {"hostname": 255, "app_name": 48, "procid": 128, "msgid": 32}
_NOT_PRINTABLE = re.compile(r"[^\x21-\x7e]")
_SD_NAME = re.compile(r'[\x21-\x7e]{1,32}')
_SD_NAME_FORBIDDEN = set('= ]"')
_PARAM_ESCAPE = re.compile(r'(["\\\]])')
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# RFC 3164 TAG: the receiver's parser stops at ':', '[' and space, so none of them may be in it
_TAG_FORBIDDEN = re.compile(r"[^\x21-\x7e]|[:\[\]]")


def header_token(text: str, limit: int) -> str:
    """`text` as an RFC 5424 header field: printable US-ASCII, no spaces, at most `limit` long."""
    token = _NOT_PRINTABLE.sub("_", text)[:limit]
    return token or NIL


def tag_token(text: str) -> str:
    """`text` as an RFC 3164 TAG: printable US-ASCII without space, ':' or brackets, 32 at most."""
    return _TAG_FORBIDDEN.sub("_", text)[:32] or "logship"


def sd_name_problem(name: str, sd_id: bool = False) -> str | None:
    """Why `name` is not a valid SD-NAME (or SD-ID), or None when it is."""
    if not _SD_NAME.fullmatch(name) or _SD_NAME_FORBIDDEN & set(name):
        return f"{name!r} is not an SD-NAME: 1 to 32 printable US-ASCII characters except = ] \" and space"
    if sd_id and "@" not in name and name not in REGISTERED_SD_IDS:
        return (f"{name!r} is not a registered SD-ID ({', '.join(sorted(REGISTERED_SD_IDS))}): "
                "use name@<private enterprise number>, e.g. logship@32473")
    if sd_id and "@" in name and not name.partition("@")[2].replace(".", "").isdigit():
        return f"{name!r}: after the @ comes a private enterprise number, e.g. logship@32473"
    return None


def param_value(value: str) -> str:
    """A PARAM-VALUE: control characters made visible, then `"`, `\\` and `]` escaped."""
    return _PARAM_ESCAPE.sub(r"\\\1", one_line(value))


def structured_data(elements: list[tuple[str, list[tuple[str, str]]]]) -> str:
    """STRUCTURED-DATA from (SD-ID, [(PARAM-NAME, value), ...]) pairs; NILVALUE when empty."""
    if not elements:
        return NIL
    return "".join("[" + sd_id + "".join(f' {name}="{param_value(value)}"' for name, value in params) + "]"
                   for sd_id, params in elements)


def timestamp_5424(epoch: float) -> str:
    """An RFC 5424 TIMESTAMP in UTC with milliseconds."""
    moment = datetime.fromtimestamp(epoch, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def timestamp_3164(epoch: float) -> str:
    """An RFC 3164 TIMESTAMP (`Mmm dd hh:mm:ss`), in local time as its receivers assume."""
    moment = time.localtime(epoch)
    return f"{_MONTHS[moment.tm_mon - 1]} {moment.tm_mday:2d} {time.strftime('%H:%M:%S', moment)}"


def rfc5424_head(pri: int, epoch: float, hostname: str, app_name: str, procid: str, msgid: str,
                 sd: str) -> str:
    """Everything of an RFC 5424 message up to and including the space before MSG."""
    return (f"<{pri}>1 {timestamp_5424(epoch)} {header_token(hostname, LIMITS['hostname'])} "
            f"{header_token(app_name, LIMITS['app_name'])} {header_token(procid, LIMITS['procid'])} "
            f"{header_token(msgid, LIMITS['msgid'])} {sd} ")


def rfc3164_head(pri: int, epoch: float, hostname: str | None, app_name: str, procid: str) -> str:
    """Everything of an RFC 3164 message up to the content; no HOSTNAME (None) is syslog(3)'s local form."""
    pid = f"[{header_token(procid, LIMITS['procid'])}]" if procid else ""
    host = "" if hostname is None else header_token(hostname, LIMITS["hostname"]) + " "
    return f"<{pri}>{timestamp_3164(epoch)} {host}{tag_token(app_name)}{pid}: "


def fit(head: str, msg: str, max_size: int) -> bytes | None:
    """The message in at most `max_size` bytes, MSG cut with the marker; None if the head is too big."""
    head_bytes, msg_bytes = head.encode("utf-8", "replace"), one_line(msg).encode("utf-8", "replace")
    if len(head_bytes) + len(msg_bytes) <= max_size:
        return head_bytes + msg_bytes
    room = max_size - len(head_bytes) - len(TRUNCATION_MARKER)
    if room < 0:
        return None
    # cut on a character boundary: a partial UTF-8 sequence at the end is dropped
    kept = msg_bytes[:room].decode("utf-8", "ignore").encode("utf-8")
    return head_bytes + kept + TRUNCATION_MARKER.encode()


def frame(message: bytes, framing: str | None) -> bytes:
    """The message as it goes on the wire: octet-counted or LF-terminated (streams), bare (datagrams)."""
    if framing == "octet-counting":
        return b"%d %s" % (len(message), message)
    if framing == "lf":
        return message + b"\n"  # no LF inside: one_line and header_token escape or replace them all
    return message
