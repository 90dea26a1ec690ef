"""syslog-ng's syslog() source, which says "Error processing log message" for malformed input."""
from __future__ import annotations

import pytest

from helpers import traffic, wait_for
from logship.sinks.syslog.sink import SyslogSink
from syslog_receivers import SyslogNg
from syslog_ship import SD, output, rendered, sample_records, ship, traffic_records

FORMATS = ("json", "mailerq", "logfmt", "accounting")


# (syslog() reads TCP only octet-counted, as RFC 5425/6587 say: LF framing is for rsyslog and network())
@pytest.mark.parametrize("transport, protocol, framing", [
    ("tcp", "rfc5424", None), ("udp", "rfc5424", None), ("tcp", "rfc3164", None)])
def test_syslog_ng_parses_every_sample_and_generated_traffic_without_an_error(tmp_path, transport, protocol, framing):
    items = rendered(sample_records(), FORMATS) + rendered(traffic_records(traffic(150, seed=5)), ("json", "mailerq"))
    keys = {"framing": framing} if framing else {}
    with SyslogNg(tmp_path, transport) as ng:
        sink = SyslogSink.from_config(output(f"{transport}://127.0.0.1:{ng.port}", protocol=protocol,
                                             structured_data=SD, msgid="{{ record.outcome }}-{{ attempt.state }}",
                                             **keys))
        try:
            ship(sink, items)
        finally:
            sink.close()
        wait_for(lambda: len(ng.lines()) >= len(items), timeout=20, what=f"{len(items)} messages")
    assert ng.errors() == []
    assert len(ng.lines()) == len(items) > 400
    if protocol == "rfc5424":
        assert sorted(ng.lines()) == sorted(f"{r['record']['outcome']}-{r['attempt'].get('state', '')} {line}"
                                            for r, line in items)
