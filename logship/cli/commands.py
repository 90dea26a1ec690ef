"""What each command does: run, check, render, replay and init."""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import IO, Iterable, Iterator

from .. import shipped
from ..config.load import Config, scoped, warnings
from ..config.queues import Queue
from ..errors import ConfigError
from ..render.formats import FormatSet, configure, utc_iso
from ..render.record import Source
from ..settings import load
from .codes import EXIT_CONFIG, EXIT_DATAERR, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE


def checked_config(path: str, broker: bool = True) -> tuple[Config, FormatSet]:
    """Load the config and its formats; raise ConfigError or FormatError on any problem (broker URLs unless told)."""
    from ..pipeline import routers
    config = load(path, broker=broker)
    formats = FormatSet.load(config.formats.dir)
    for error in formats.errors.values():
        raise error
    routers(config)
    return config, formats


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon."""
    from ..service import logs
    from ..service.daemon import Daemon
    from ..service.memory import keep_freed_memory
    config, _formats = checked_config(args.config)
    logs.setup(config.log.level)
    keep_freed_memory()
    Daemon(config).run()
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the config and compile every format, offline."""
    from ..pipeline import routers
    config = load(args.config)
    formats = FormatSet.load(config.formats.dir)
    routers(config)
    for name, fmt in sorted(formats.formats.items()):
        print(f"format {name}: ok ({fmt.path}, sha256 {fmt.digest}, modified {_modified(fmt.path)})")
    for error in formats.errors.values():
        # a running daemon keeps the last good version of such a file (docs/operations.md, "Live formats and reload")
        print(f"format error: {error} (a running daemon keeps its last good version)", file=sys.stderr)
    if formats.errors:
        return EXIT_CONFIG
    for queue in config.queues:
        print(f"queue {queue.name}: {queue.describe()}")
    for warning in warnings(config):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{config.file}: ok: {len(config.queues)} queues, {len(config.outputs)} outputs, "
          f"{len(config.routes)} routes, broker {config.broker.display_url}")
    from ..broker.probe import check  # --broker: every node, and each queue as the broker has it
    outcome = check(config.file, config.broker, config.queues) if args.broker else "ok"
    return {"ok": EXIT_OK, "unavailable": EXIT_UNAVAILABLE}.get(outcome, EXIT_CONFIG)


def cmd_render(args: argparse.Namespace) -> int:
    """Print the lines one message (or several) produce in one format."""
    from ..render.preview import preview
    if args.sample == [""] and not args.files:  # `--sample` alone: what there is to render
        print("\n".join(f"{name:<28} {what}" for name, what in shipped.samples().items()))
        return EXIT_OK
    if not args.format or not (args.files or args.sample):
        print("logship render: needs --format NAME and FILE.json or --sample NAME (--sample alone lists the "
              "samples)", file=sys.stderr)
        return EXIT_USAGE
    config, formats = checked_config(args.config, broker=False)  # offline: no broker to reach
    if args.format not in formats:
        raise ConfigError(config.file, "formats", f"no format {args.format!r} in {config.formats.dir}")
    configure(config.formats.render_timeout, config.formats.max_line_length)  # run and replay: the pipeline
    queue = _queue(config, args.queue)
    # every attempt unless --scope says otherwise: testing a format means seeing each attempt's line
    source = Source(queue.name, args.scope, queue.final)
    bodies = _bodies(args.files, args.sample or ())
    bad = preview(config, formats, args.format, source, bodies, 0.0 if args.epoch_zero else time.time())
    return EXIT_DATAERR if bad else EXIT_OK


def _bodies(files: list[str], samples: Iterable[str]) -> Iterator[tuple[str, bytes]]:
    """(name, body) of each file, then of each shipped sample named."""
    for name in files:
        with _open(name) as f:
            yield name, f.read()
    for name in samples:
        yield f"sample {name}", shipped.sample(name)


def sample_name(name: str) -> str:
    """A shipped sample's name (--sample); a usage error naming the way to list them otherwise."""
    if name and name not in shipped.samples():  # "" is --sample alone (argparse passes the const through here)
        raise argparse.ArgumentTypeError(f"no sample {name!r}; `logship render --sample` lists them")
    return name


def cmd_replay(args: argparse.Namespace) -> int:
    """Feed result messages from JSON lines through the pipeline to the outputs; say what it did."""
    from .. import replay
    from ..service import logs
    from ..service.memory import fewer_collections, keep_freed_memory
    from ..pipeline import Pipeline
    config, formats = checked_config(args.config, broker=False)  # offline: no broker to reach
    logs.setup(config.log.level)
    keep_freed_memory()
    fewer_collections()
    pipeline = replay.dry_pipeline(config, formats) if args.dry_run else Pipeline.build(config, formats)
    bar = replay.progress(args.file)
    try:
        summary = replay.Replay(config, pipeline, args.scope).run(replay.lines(args.file, replay.PlainQueue(args.queue)), bar)
    finally:
        if bar is not None:
            bar.close()
        pipeline.close()
    print(summary.line(config.quarantine.path, args.dry_run), file=sys.stderr)
    return EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    """Write a starting config and the shipped formats, or print the unit or logrotate snippet."""
    if args.unit or args.logrotate:
        print(shipped.unit() if args.unit else shipped.shipped("systemd/logship.logrotate"), end="")
        return EXIT_OK
    written = shipped.init_from_mailerq(args.from_mailerq, args.dir, args.force, args.mailerq_version) \
        if args.from_mailerq else shipped.init(args.dir, force=args.force)
    print("\n".join(written.lines()))
    return EXIT_OK


def _queue(config: Config, name: str) -> Queue:
    """The configured queue called `name`, or one with the defaults for that name."""
    return next((q for q in config.queues if q.name == name), None) or scoped((Queue(name),))[0]


def _modified(path: str) -> str:
    """A file's modification time in UTC, ISO 8601: when this version of a format was saved."""
    return utc_iso(os.stat(path).st_mtime)


def _open(name: str) -> IO[bytes]:
    """A file opened for binary reading; '-' is standard input."""
    return sys.stdin.buffer if name == "-" else open(name, "rb")
