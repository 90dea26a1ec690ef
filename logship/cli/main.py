"""The command line: its parser, where the config is looked for, and the errors turned into exit codes."""
from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from ..errors import ConfigError, FormatError, LogshipError, OutputError, RenderError
from ..render.budget import BUDGET
from ..shipped import DEFAULT_CONFIG
from .codes import EXIT_CONFIG, EXIT_FAILURE, EXIT_UNAVAILABLE
from .commands import cmd_check, cmd_init, cmd_render, cmd_replay, cmd_run, sample_name


def _config_path(args: argparse.Namespace) -> str:
    """--config, else $LOGSHIP_CONFIG, else /etc/logship/logship.toml; a missing file is a config error."""
    path = args.config or os.environ.get("LOGSHIP_CONFIG") or DEFAULT_CONFIG
    if not os.path.exists(path):
        raise ConfigError(path, "", f"no such file: `logship init {os.path.dirname(os.path.abspath(path))}` "
                          "writes a starting config and the shipped formats there")
    return path


def _mailerq_version(text: str) -> tuple[int, int]:
    """--mailerq-version's type (init --from-mailerq's module is imported only when it is given)."""
    from ..shipped.from_mailerq import version
    return version(text)


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
    p_check = command("check", cmd_check, "validate the config and compile every format, offline",
                      "Validate the config file and compile every format; exit 0 when all is well, "
                      f"{EXIT_CONFIG} with the file, key or line when not. Needs no broker, unless --broker.")
    p_check.add_argument("--broker", action="store_true", help="also connect to every node and say, for each "
                         "queue, whether it exists or will be declared, arguments that differ from the config "
                         f"({EXIT_CONFIG}), its bindings' exchanges, depth and consumers; {EXIT_UNAVAILABLE} when "
                         "no node answers. Changes nothing on the broker (docs/mailerq.md)")
    r = command("render", cmd_render, "print the lines a message produces in one format",
                "Render result messages (JSON files, or samples shipped with logship) through one format "
                "and print the lines, one per attempt (--scope to choose). No broker, no outputs touched.")
    r.add_argument("--format", "-f", help="the format's name (NAME.j2)")
    r.add_argument("--queue", default="results", help="read the message as if from this queue (default results)")
    r.add_argument("--scope", choices=("all", "latest", "message"), default="all", help="which attempts are "
                   "records: all (default: every attempt the message holds), latest (the newest only, what the "
                   "daemon writes for a retry queue, or for results consumed beside retry), message (one record)")
    r.add_argument("--sample", action="append", nargs="?", const="", type=sample_name, metavar="NAME",
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
    p_init.add_argument("--from-mailerq", metavar="FILE", help="MailerQ's config file (/etc/mailerq/config.txt): "
                        "the config takes exactly what that MailerQ publishes, once (docs/mailerq.md)")
    p_init.add_argument("--mailerq-version", metavar="X.Y", type=_mailerq_version, help="with --from-mailerq: "
                        "MailerQ's version, when its file leaves rabbitmq-exchange or the 5.15 layout to the defaults")
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
