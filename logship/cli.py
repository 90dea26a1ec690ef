"""`logship run`, `check`, `render`, `replay` and `init`, with named exit codes."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import IO, Iterable, Iterator

# logrotate's postrotate (SIGUSR1) or a reload (SIGHUP) may reach a daemon that is still
# starting: their default action would kill it. Until the daemon installs its handlers there
# is nothing to reopen or reload yet (files are opened and the config read after), so both
# are ignored from the first moment the command runs, before the slower imports below.
signal.signal(signal.SIGUSR1, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)

from . import __version__
from .config.load import Config, scoped, warnings
from .config.queues import Queue
from .settings import load
from .errors import ConfigError, FormatError, LogshipError, OutputError, RenderError
from .render.budget import BUDGET
from .render.formats import FormatSet, configure, utc_iso
from .render.record import Source
from . import shipped
from .shipped import DEFAULT_CONFIG, from_mailerq

EXIT_OK = 0
EXIT_FAILURE = 1      # a runtime failure: broker, outputs
EXIT_USAGE = 2        # argparse's own
EXIT_DATAERR = 65     # `render`: the input is not a result message (sysexits EX_DATAERR)
EXIT_UNAVAILABLE = 69  # `check --broker`: no node of the broker answered (sysexits EX_UNAVAILABLE)
EXIT_CONFIG = 78      # the config or a format is invalid (sysexits EX_CONFIG); no restart helps


def checked_config(path: str) -> tuple[Config, FormatSet]:
    """Load the config and its formats; raise ConfigError or FormatError on any problem."""
    from .pipeline import routers
    config = load(path)
    formats = FormatSet.load(config.formats.dir)
    for error in formats.errors.values():
        raise error
    routers(config)
    return config, formats


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon."""
    from .service import logs
    from .service.daemon import Daemon
    from .service.memory import keep_freed_memory
    config, _formats = checked_config(args.config)
    logs.setup(config.log.level)
    keep_freed_memory()
    Daemon(config).run()
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the config and compile every format, offline."""
    from .pipeline import routers
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
    from .broker.probe import check  # --broker: every node, and each queue as the broker has it
    outcome = check(config.file, config.broker, config.queues) if args.broker else "ok"
    return {"ok": EXIT_OK, "unavailable": EXIT_UNAVAILABLE}.get(outcome, EXIT_CONFIG)


def cmd_render(args: argparse.Namespace) -> int:
    """Print the lines one message (or several) produce in one format."""
    from .render.preview import preview
    if args.sample == [""] and not args.files:  # `--sample` alone: what there is to render
        print("\n".join(f"{name:<28} {what}" for name, what in shipped.samples().items()))
        return EXIT_OK
    if not args.format or not (args.files or args.sample):
        print("logship render: needs --format NAME and FILE.json or --sample NAME (--sample alone lists the "
              "samples)", file=sys.stderr)
        return EXIT_USAGE
    config, formats = checked_config(args.config)
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


def _sample_name(name: str) -> str:
    """A shipped sample's name (--sample); a usage error naming the way to list them otherwise."""
    if name and name not in shipped.samples():  # "" is --sample alone (argparse passes the const through here)
        raise argparse.ArgumentTypeError(f"no sample {name!r}; `logship render --sample` lists them")
    return name


def cmd_replay(args: argparse.Namespace) -> int:
    """Feed result messages from JSON lines through the pipeline to the outputs; say what it did."""
    from . import replay
    from .service import logs
    from .service.memory import keep_freed_memory
    from .pipeline import Pipeline
    config, formats = checked_config(args.config)
    logs.setup(config.log.level)
    keep_freed_memory()
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


def _config_path(args: argparse.Namespace) -> str:
    """--config, else $LOGSHIP_CONFIG, else /etc/logship/logship.toml; a missing file is a config error."""
    path = args.config or os.environ.get("LOGSHIP_CONFIG") or DEFAULT_CONFIG
    if not os.path.exists(path):
        raise ConfigError(path, "", f"no such file: `logship init {os.path.dirname(os.path.abspath(path))}` "
                          "writes a starting config and the shipped formats there")
    return path


def _queue(config: Config, name: str) -> Queue:
    """The configured queue called `name`, or one with the defaults for that name."""
    return next((q for q in config.queues if q.name == name), None) or scoped((Queue(name),))[0]


def _modified(path: str) -> str:
    """A file's modification time in UTC, ISO 8601: when this version of a format was saved."""
    return utc_iso(os.stat(path).st_mtime)


def _open(name: str) -> IO[bytes]:
    """A file opened for binary reading; '-' is standard input."""
    return sys.stdin.buffer if name == "-" else open(name, "rb")


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog="logship", description="Ships MailerQ delivery results from "
                                "RabbitMQ to log files through formats you write.")
    p.add_argument("--version", action="version", version=f"logship {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: object, help: str, description: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=description)
        c.add_argument("--config", "-c", metavar="PATH", help="the TOML config file (default $LOGSHIP_CONFIG, "
                       f"else {DEFAULT_CONFIG})")
        c.set_defaults(func=func)
        return c

    command("run", cmd_run, "consume the queues and write records (the daemon)",
            "Consume the configured queues, write one record per new attempt to the outputs, "
            "acknowledge once they hold it. Stops cleanly on SIGTERM/SIGINT; SIGHUP reloads the config and formats and "
            "reopens files; SIGUSR1 (logrotate) only reopens files; edited formats and config are reloaded on "
            "their own.")
    command("check", cmd_check, "validate the config and compile every format, offline",
            "Validate the config file and compile every format; exit 0 when all is well, "
            f"{EXIT_CONFIG} with the file, key or line when not. Needs no broker, unless --broker.").add_argument(
        "--broker", action="store_true", help=f"also say what each node and queue holds; {EXIT_UNAVAILABLE}: no node")
    r = command("render", cmd_render, "print the lines a message produces in one format",
                "Render result messages (JSON files, or samples shipped with logship) through one format "
                "and print the lines, one per attempt (--scope to choose). No broker, no outputs touched.")
    r.add_argument("--format", "-f", help="the format's name (NAME.j2)")
    r.add_argument("--queue", default="results", help="read the message as if from this queue (default results)")
    r.add_argument("--scope", choices=("all", "latest", "message"), default="all", help="which attempts are "
                   "records: all (default: every attempt the message holds), latest (the newest only, what the "
                   "daemon writes for a retry queue, or for results consumed beside retry), message (one record)")
    r.add_argument("--sample", action="append", nargs="?", const="", type=_sample_name, metavar="NAME",
                   help="render a sample message shipped with logship (repeatable); --sample alone lists them")
    r.add_argument("--epoch-zero", action="store_true", help="set record.received to 1970-01-01 (reproducible output)")
    r.add_argument("files", nargs="*", metavar="FILE.json", help="result message files; - for stdin")
    p_replay = command("replay", cmd_replay, "feed JSON-lines result messages to the outputs, no broker",
                       "Send result messages, one JSON object a line, through the same pipeline to the "
                       "configured outputs: backfills, demos, quarantine recovery. Lines of the form "
                       '{"queue": NAME, "body": MESSAGE} are read as if from that queue; the lines of a '
                       "quarantine file send the raw bodies they kept again. A file holds each message once, "
                       "so plain lines give every attempt (scope all) unless --scope says otherwise. Ends with "
                       "one summary line on stderr; a progress bar while stderr is a terminal.")
    p_replay.add_argument("file", metavar="FILE", help="JSON-lines file; - for stdin")
    p_replay.add_argument("--queue", default="results", help="read plain lines as if from this queue (default results)")
    p_replay.add_argument("--scope", choices=("all", "latest", "message"), help="which attempts of each message "
                          "are new (default for plain lines: all, as a file holds each message once; latest for a "
                          "retry queue's; lines naming their queue: that queue's configured scope)")
    p_replay.add_argument("--dry-run", action="store_true", help="render, route and count, but write nothing "
                          "to the outputs or the quarantine")
    p_init = sub.add_parser("init", help="write a starting config and the shipped formats; print the unit",
                            description="Write DIR/logship.toml (the production example, /etc/logship replaced by DIR) "
                            "and DIR/formats/ with the shipped formats; existing files are left alone unless "
                            "--force. --unit and --logrotate print the systemd unit (its command lines naming "
                            "this logship) and the logrotate snippet instead.")
    p_init.add_argument("dir", nargs="?", default=os.path.dirname(DEFAULT_CONFIG), metavar="DIR",
                        help=f"the config folder (default {os.path.dirname(DEFAULT_CONFIG)})")
    p_init.add_argument("--force", action="store_true", help="overwrite existing files")
    p_init.add_argument("--from-mailerq", metavar="FILE", help="MailerQ's config file: take what it publishes, once")
    p_init.add_argument("--mailerq-version", metavar="X.Y", type=from_mailerq.version, help="its version, if unsure")
    printed = p_init.add_mutually_exclusive_group()
    printed.add_argument("--unit", action="store_true", help="print the systemd unit for this install and exit")
    printed.add_argument("--logrotate", action="store_true", help="print the logrotate snippet and exit")
    p_init.set_defaults(func=cmd_init)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `logship` command."""
    args = parser().parse_args(argv)
    try:
        if hasattr(args, "config") and getattr(args, "sample", None) != [""]:  # listing samples needs no config
            args.config = _config_path(args)
        BUDGET.arm()  # renders (run, replay, render) are timed: formats.render_timeout
        return args.func(args)
    except (ConfigError, FormatError) as error:
        print(f"logship: config error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except (OutputError, RenderError, LogshipError) as error:
        print(f"logship: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
    finally:
        BUDGET.disarm()


if __name__ == "__main__":
    sys.exit(main())
