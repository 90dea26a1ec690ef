"""The config as every command uses it: read and checked by config/, then each output by its sink.

config/ knows no sink and no pika; a sink checks its own table, broker/ the URLs as pika reads
them. This is where they meet, above them all, so `check`, `run` and a reload refuse the same
mistakes with the same words. `replay` and `render` never connect: they skip the URL check,
and so never import pika (a fifth of their start-up).
"""
from __future__ import annotations

import os
from typing import Mapping

from . import sinks
from .config import load as config_load
from .config.load import Config


def load(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None,
         require_formats: bool = True, broker: bool = True) -> Config:
    """Read and check the config file at `path`, outputs included (ConfigError names file and key)."""
    config = config_load.read(path, environ)
    if broker:  # read as the connection will read them (pika's parser, query included), credentials applied
        from .broker.connection import check_urls
        variable = "LOGSHIP_BROKER_URL" in (os.environ if environ is None else environ)
        check_urls(config.broker, config.file, "LOGSHIP_BROKER_URL" if variable else "broker.url")
    sinks.check(config)  # each table alone first, as config/ does, then how they refer to each other
    config_load.check(config, require_formats)
    return config
