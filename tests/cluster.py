"""A three-node RabbitMQ cluster on loopback for the test run, with TLS listeners signed by a CA made here."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import pika

from broker import RabbitNode, free_port
from helpers import TRACE_OUTPUT, RunningDaemon, expected_attempts, write_config


class TestCA:
    """A certificate authority made with openssl for one test run, and certificates it signs."""

    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(self, folder: Path, name: str = "logship test CA") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.key, self.cert = folder, folder / "ca.key", folder / "ca.pem"
        _openssl("req", "-x509", *_NEW_KEY, "-keyout", self.key, "-out", self.cert, "-days", "2",
                 "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(self, name: str, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> tuple[Path, Path]:
        """(certificate, key) for `name`, valid for `hosts` (DNS names and IP addresses)."""
        cert, key, csr = (self.folder / f"{name}.{ext}" for ext in ("pem", "key", "csr"))
        _openssl("req", "-new", *_NEW_KEY, "-keyout", key, "-out", csr, "-subj", f"/CN={hosts[0]}")
        names = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() else f"DNS:{h}" for h in hosts)
        extensions = self.folder / f"{name}.ext"
        extensions.write_text(f"subjectAltName={names}\nextendedKeyUsage=serverAuth,clientAuth\n")
        _openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key, "-CAcreateserial",
                 "-out", cert, "-days", "2", "-extfile", extensions)
        return cert, key


_NEW_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def _openssl(*args: object) -> None:
    """Run the openssl command line; its complaint becomes the error."""
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


class RabbitCluster:
    """Nodes of Debian's rabbitmq-server joined into one cluster (one Erlang cookie: the rabbitmq user's)."""

    def __init__(self, size: int, ca: TestCA) -> None:
        self.nodes = [RabbitNode() for _ in range(size)]
        self.ca = ca
        self.tls_ports = [self._with_tls(node) for node in self.nodes]

    def _with_tls(self, node: RabbitNode) -> int:
        """Give `node` a TLS listener with a certificate from the CA; its port."""
        port = free_port()
        cert, key = self.ca.issue(node.name.partition("@")[0])
        for source in (self.ca.cert, cert, key):
            shutil.copy(source, node.dir / source.name)
        if os.geteuid() == 0:
            for path in node.dir.iterdir():
                shutil.chown(path, "rabbitmq", "rabbitmq")
        with open(node.dir / "rabbitmq.conf", "a") as conf:
            conf.write(f"listeners.ssl.1 = 127.0.0.1:{port}\n"
                       f"ssl_options.cacertfile = {node.dir / self.ca.cert.name}\n"
                       f"ssl_options.certfile = {node.dir / cert.name}\n"
                       f"ssl_options.keyfile = {node.dir / key.name}\n"
                       "ssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n")
        return port

    def start(self) -> None:
        """Start the first node, then the others one at a time, each joining the first as it boots.

        The others find the first by classic-config peer discovery: a node with an empty
        database joins the node listed. It took 25 s on an idle 2-core machine to start all
        three at once (their boots compete for the cores) and then join two with rabbitmqctl
        (stop_app, join_cluster, start_app: six Erlang VMs); one after the other, joining as
        they boot, 16 s. One at a time, never two joining at once.
        """
        first = self.nodes[0].name
        for node in self.nodes[1:]:
            with open(node.dir / "rabbitmq.conf", "a") as conf:
                conf.write("cluster_formation.peer_discovery_backend = classic_config\n"
                           f"cluster_formation.classic_config.nodes.1 = {first}\n")
        for node in self.nodes:
            node.start()
        running = json.loads(self.nodes[0].ctl("cluster_status", "--formatter", "json"))["running_nodes"]
        assert sorted(running) == sorted(n.name for n in self.nodes), running

    def urls(self, vhost: str) -> list[str]:
        """Every node's AMQP URL of `vhost`, in node order."""
        return [node.vhost_url(vhost) for node in self.nodes]

    def tls_urls(self, vhost: str, host: str = "localhost") -> list[str]:
        """Every node's amqps:// URL of `vhost`."""
        return [f"amqps://guest:guest@{host}:{port}/{vhost}" for port in self.tls_ports]

    def running(self) -> RabbitNode:
        """A node that is up, for rabbitmqctl and publishing."""
        return next(node for node in self.nodes if node.process is not None)

    def node_at(self, url: str) -> RabbitNode:
        """The node whose AMQP port `url` names (the daemon logs the URL of the node it consumes from)."""
        return next(node for node in self.nodes if f":{node.port}/" in url)

    def new_vhost(self) -> str:
        """A fresh virtual host on the whole cluster."""
        return self.running().new_vhost()

    def cleanup(self) -> None:
        """Stop every node at once and remove their folders."""
        _all(node.cleanup for node in self.nodes)


def _all(calls: Iterator[Any] | Any) -> None:
    """Run the calls on threads of their own and wait for all; the first error is raised."""
    errors: list[BaseException] = []

    def run(call: Any) -> None:
        try:
            call()
        except BaseException as error:  # handed to the caller below
            errors.append(error)
    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def publish_confirmed(url: str, events: list[dict[str, Any]], queues: tuple[str, ...] = ("results", "retry"),
                      republished: list[dict[str, Any]] | None = None, confirm: bool = True) -> int:
    """Publish the events for `queues` persistent, with publisher confirms, without declaring; how many.

    A message the broker nacks (a quorum queue whose leader is moving) is published again, as
    MailerQ would; it may then be in the queue twice, so it goes to `republished` when that is given.
    """
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    if confirm:  # each publish returns once the queue's quorum has the message
        channel.confirm_delivery()
    props = pika.BasicProperties(content_type="application/json", delivery_mode=2)
    sent = 0
    for event in events:
        if event["queue"] in queues:
            _publish(channel, event, props, republished)
            sent += 1
    connection.close()
    return sent


def _publish(channel: Any, event: dict[str, Any], props: pika.BasicProperties,
             republished: list[dict[str, Any]] | None, tries: int = 100) -> None:
    """One confirmed publish, again after a nack (only when the caller keeps track of those)."""
    body = json.dumps(event["body"]).encode()
    for _ in range(tries):
        try:
            channel.basic_publish("", event["queue"], body, props, mandatory=True)
            return
        except pika.exceptions.NackError:
            if republished is None:
                raise
            republished.append(event)
            time.sleep(0.1)
    raise AssertionError(f"the broker nacked a message {tries} times")


class Publisher(threading.Thread):
    """Publishes events in the background, a chunk at a time with a pause between: traffic that goes on."""

    def __init__(self, url: str, events: list[dict[str, Any]], chunk: int = 100, pause: float = 0.05) -> None:
        super().__init__(name="test-publisher")
        self.url, self.events, self.chunk, self.pause = url, events, chunk, pause
        self.sent = 0
        self.republished: list[dict[str, Any]] = []  # nacked, then published again: maybe queued twice
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for start in range(0, len(self.events), self.chunk):
                self.sent += publish_confirmed(self.url, self.events[start:start + self.chunk],
                                               republished=self.republished)
                time.sleep(self.pause)
        except BaseException as error:  # the test asserts there was none
            self.error = error

    def finish(self, timeout: float = 120) -> int:
        """Wait for the last chunk; how many were published (an error in the thread fails the test)."""
        self.join(timeout)
        assert not self.is_alive(), "the publisher did not finish"
        assert self.error is None, f"publishing failed: {self.error!r}"
        return self.sent


#: one JSON line per record: enough to find every attempt, its message and how it was delivered
TRACE = ('{{ {"recipient": message.recipient, "attempt": record.attempt_number, "attempts": record.attempts, '
         '"time": attempt.time, "queue": record.queue, "redelivered": record.redelivered, '
         '"count": record.delivery_count} | json }}\n')


def trace_config(folder: Path, urls: str | list[str], queues: str, extra: str = "") -> Path:
    """A config in `folder` (a copy of the formats beside it) writing a trace line per record to log/all.jsonl."""
    if not (folder / "formats").exists():
        shutil.copytree(Path(__file__).resolve().parent.parent / "formats", folder / "formats")
    (folder / "formats" / "trace.j2").write_text(TRACE)
    path = write_config(folder, "X", TRACE_OUTPUT + extra, queues=())
    text = path.read_text().replace('url = "X"', f"url = {json.dumps(urls)}")
    path.write_text(text.replace("prefetch = 1000\n", "prefetch = 1000\n\n" + queues))
    return path


def written(*folders: Path) -> list[dict[str, Any]]:
    """The trace lines in the folders' log/all.jsonl (a line cut short by SIGKILL is left out: it was not acked)."""
    lines = []
    for folder in folders:
        path = folder / "log" / "all.jsonl"
        text = path.read_text() if path.exists() else ""
        lines += [json.loads(line) for line in text.splitlines() if line.endswith("}")]
    return lines


def check_every_attempt_once(lines: list[dict[str, Any]], events: list[dict[str, Any]],
                             republished: list[dict[str, Any]], folders: tuple[Path, ...] = ()) -> Counter[tuple[Any, ...]]:
    """Assert every attempt is written, and twice only where RabbitMQ redelivered (or the publisher sent it again)."""
    counts = Counter((r["recipient"], r["attempt"], r["time"]) for r in lines)
    expected = expected_attempts(events)
    assert sorted(counts) == expected, missing_attempts(set(expected) - set(counts), set(counts) - set(expected), folders)
    twice = {key for key, n in counts.items() if n > 1}
    redelivered = {(r["recipient"], r["attempt"], r["time"]) for r in lines if r["redelivered"]}
    redelivered |= {(r["recipient"], r["attempt"], r["time"]) for r in expected_records(republished)}
    assert twice <= redelivered, f"duplicates that redelivery does not explain: {sorted(twice - redelivered)[:5]}"
    return counts


def missing_attempts(missing: set[tuple[Any, ...]], unknown: set[tuple[Any, ...]], folders: tuple[Path, ...]) -> str:
    """What to know when an attempt is missing: which, and what each daemon quarantined or rejected.

    An earlier run once found one attempt missing and kept nothing to tell why; this says it next time.
    """
    said = [f"{len(missing)} attempts missing, e.g. {sorted(missing)[:5]}; {len(unknown)} never sent, e.g. {sorted(unknown)[:5]}"]
    for folder in folders:
        quarantine = folder / "quarantine" / "quarantine.jsonl"
        if quarantine.exists():
            said += [f"{folder.name} quarantined: {json.loads(line)['reason']}" for line in quarantine.read_text().splitlines()[:5]]
        log = folder / "logship.stderr"
        if log.exists():
            said += [f"{folder.name} logged: {line[:300]}" for line in log.read_text().splitlines()
                     if "quarantined" in line or "Traceback" in line][:5]
    return "\n".join(said)


def expected_records(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every attempt of the events' messages, in the shape of a trace line."""
    return [{"recipient": e["body"]["recipient"], "attempt": i + 1, "time": attempt["time"]}
            for e in events for i, attempt in enumerate(e["body"]["results"])]


def consuming_from(daemon: RunningDaemon) -> str:
    """The URL (password masked) of the node the daemon consumes from now."""
    return [e for e in daemon.log() if e["message"] == "consuming"][-1]["broker"]
