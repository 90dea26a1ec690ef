"""The `logship` command: `main.py` parses and runs it, `commands.py` does each command, `codes.py` names the exit codes."""
from __future__ import annotations

import signal

# logrotate's postrotate (SIGUSR1) or a reload (SIGHUP) may reach a daemon that is still
# starting: their default action would kill it. Until the daemon installs its handlers there
# is nothing to reopen or reload yet (files are opened and the config read after), so both
# are ignored as soon as a command runs logship's code (this package comes first), before
# the slower imports below.
signal.signal(signal.SIGUSR1, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
