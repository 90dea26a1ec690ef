"""Reloading the config and formats: build the new setup to the side, report, swap in one step."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from ..config.load import Config
from ..settings import load
from ..errors import ConfigError, OutputError
from ..render.formats import FormatSet
from ..pipeline import Pipeline, Router, routers
from ..quarantine import Quarantine
from ..sinks import Sink, build_sink

log = logging.getLogger("logship")


@dataclass
class Setup:
    """Everything a pipeline runs with, built but not yet in use."""

    config: Config
    formats: FormatSet
    routers: list[Router]
    sinks: dict[str, Sink]
    quarantine: Quarantine
    built: list[Sink] = field(default_factory=list)  # sinks made for this setup (closed if unused)

    def discard(self) -> None:
        """Close the sinks made for a setup that will not be used."""
        for sink in self.built:
            sink.close()


def read_config(file: str, running: Config) -> tuple[Config, str | None]:
    """The config on disk, or the running one and why the new one was refused (file and key)."""
    try:
        config = load(file, require_formats=False)
        routers(config)  # a bad `when` refuses the whole config, so the old routes stay together
        return config, None
    except ConfigError as error:
        log.error("config invalid; keeping the running config",
                  extra={"error": str(error), "file": error.file, "key": error.key})
        return running, str(error)


def read_formats(folder: str, running: FormatSet, gone: set[str]) -> FormatSet:
    """The formats on disk, a broken one keeping its running version; each change logged.

    A format missing from disk is removed only when it is in `gone` (it was missing at the
    reload before too): a delete-and-recreate save must not stop it for a moment.
    """
    formats = FormatSet.load(folder, previous=running)
    for name in set(running.formats) - set(formats.formats) - gone:
        formats.formats[name] = running.formats[name]
        log.info("format file gone; looking again before its routes stop", extra={"format": name})
    for name, fmt in sorted(formats.formats.items()):
        old = running.formats.get(name)
        if old is not fmt and name not in formats.errors:
            log.info("format loaded", extra={"format": name, "sha256": fmt.digest, "file": fmt.path,
                                             "previous": old.digest if old else None})
    for name in sorted(set(running.formats) - set(formats.formats)):
        log.warning("format removed; its routes stop", extra={"format": name})
    for name, error in sorted(formats.errors.items()):
        if not name:  # the folder itself
            log.error("formats folder missing; keeping every running format", extra={"folder": error.file})
            continue
        live = formats.formats.get(name)
        log.error("format failed to compile; keeping its running version" if live else
                  "format failed to compile; it is not loaded",
                  extra={"format": name, "file": error.file, "line": error.line, "error": error.problem,
                         "live": live.digest if live else None})
    return formats


def prepare(pipeline: Pipeline, config: Config, formats: FormatSet) -> Setup:
    """Build a setup to the side: unchanged outputs keep their sink objects, the rest are new."""
    ready = routers(config)
    old = {o.name: o for o in pipeline.config.outputs}
    setup = Setup(config, formats, ready, {}, pipeline.quarantine)
    try:
        for output in config.outputs:
            if old.get(output.name) == output and output.name in pipeline.sinks:
                setup.sinks[output.name] = pipeline.sinks[output.name]
            else:
                setup.sinks[output.name] = sink = build_sink(output)
                setup.built.append(sink)
        if config.quarantine != pipeline.config.quarantine:
            setup.quarantine = Quarantine(config.quarantine.path)
            setup.built.append(setup.quarantine.sink)
    except Exception:
        setup.discard()
        raise
    return setup


def apply(pipeline: Pipeline, setup: Setup) -> None:
    """Swap the setup in; an OutputError (a retired sink cannot flush) changes nothing."""
    try:
        pipeline.swap(setup.config, setup.formats, setup.routers, setup.sinks, setup.quarantine)
    except OutputError:
        setup.discard()
        raise


def changed_outputs(before: Config, after: Config) -> list[str]:
    """Outputs added, removed or changed, for the log."""
    old, new = set(before.outputs), set(after.outputs)
    return sorted({o.name for o in old ^ new})


def missing(formats: FormatSet) -> set[str]:
    """Live formats whose file is gone from disk (kept for one more look)."""
    return {name for name, fmt in formats.formats.items() if not os.path.exists(fmt.path)}


def reload(pipeline: Pipeline, gone: set[str] = frozenset()) -> tuple[Config, list[str]]:
    """Read config and formats and swap in what is valid; the config now live and the errors.

    `gone`: formats missing at the last look, removed now if still missing.
    """
    running = pipeline.config
    config, error = read_config(running.file, running)
    errors = [error] if error else []
    formats = read_formats(config.formats.dir, pipeline.formats, gone)
    errors += [str(e) for e in formats.errors.values()]
    try:
        apply(pipeline, prepare(pipeline, config, formats))
    except OutputError:
        raise  # a sink to retire holds records it cannot make durable: the caller retries later
    except (ConfigError, OSError, ValueError) as problem:
        if config is running:
            raise
        log.error("new config not applied; keeping the running config",
                  extra={"error": str(problem), "file": config.file})
        errors.append(str(problem))
        if running.formats.dir != config.formats.dir:
            formats = read_formats(running.formats.dir, pipeline.formats, gone)
        apply(pipeline, prepare(pipeline, running, formats))
        config = running
    if config != running:
        log.info("config reloaded", extra={"file": config.file, "outputs changed": changed_outputs(running, config),
                                           "routes": len(config.routes)})
    return config, errors
