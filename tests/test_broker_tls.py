"""amqps:// against the cluster's TLS listeners: the test CA is trusted, another CA or a wrong name is refused, clearly."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cluster import RabbitCluster, TestCA, publish_confirmed, trace_config
from helpers import RunningDaemon, line_count, wait_for

pytestmark = pytest.mark.broker

SAMPLE = json.loads((Path(__file__).parent / "samples" / "dns-failure.json").read_text())
RESULTS = '[[queues]]\nname = "results"\ndeclare = true\n'


def tls_config(folder: Path, urls: list[str], tls: str) -> Path:
    """A trace config consuming `results` over amqps:// with the [broker] TLS keys `tls`."""
    config = trace_config(folder, urls, RESULTS)
    config.write_text(config.read_text().replace("prefetch = 1000", "prefetch = 1000\n" + tls))
    return config


def refusals(daemon: RunningDaemon) -> list[str]:
    """The errors of the daemon's failed connections."""
    return [e["error"] for e in daemon.log() if e["message"] == "reconnecting to the broker"]


@pytest.mark.parametrize("host, server_name", [("localhost", None), ("127.0.0.1", "localhost")])
def test_amqps_with_the_test_ca_consumes_checking_the_name_on_the_certificate(cluster: RabbitCluster, tmp_path,
                                                                              host, server_name):
    vhost = cluster.new_vhost()
    tls = f'tls_ca = "{cluster.ca.cert}"\n' + (f'tls_server_name = "{server_name}"\n' if server_name else "")
    config = tls_config(tmp_path, cluster.tls_urls(vhost, host), tls)
    with RunningDaemon(config) as daemon:
        wait_for(lambda: "consuming" in daemon.messages(), timeout=60, what="consuming over TLS")
        publish_confirmed(cluster.urls(vhost)[0], [{"queue": "results", "body": SAMPLE}])
        wait_for(lambda: line_count(tmp_path / "log" / "all.jsonl") == 1, what="the record")
        assert daemon.stop() == 0
    consuming = next(e for e in daemon.log() if e["message"] == "consuming")
    assert consuming["broker"].startswith(f"amqps://guest:***@{host}:")
    assert not refusals(daemon)
    assert not any("pika's internals" in m for m in daemon.messages()), "the frame loop (amqp_frames) is off"


@pytest.mark.parametrize("tls, words", [
    ("other CA", "certificate verify failed"),
    ('tls_server_name = "mq.example"', "Hostname mismatch"),
])
def test_a_node_that_cannot_prove_who_it_is_is_refused_with_a_clear_error(cluster: RabbitCluster, tmp_path,
                                                                           tls, words):
    if tls == "other CA":
        tls = f'tls_ca = "{TestCA(tmp_path / "other-ca", "not the cluster CA").cert}"'
    else:
        tls = f'tls_ca = "{cluster.ca.cert}"\n{tls}'
    config = tls_config(tmp_path, cluster.tls_urls(cluster.new_vhost())[:2], tls)
    with RunningDaemon(config) as daemon:
        wait_for(lambda: len(refusals(daemon)) >= 2, timeout=60, what="both nodes refused")
        assert daemon.stop() == 0
    assert "consuming" not in daemon.messages()
    for error in refusals(daemon):
        assert words in error and "TLS" in error, error
