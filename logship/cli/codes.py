"""The exit codes of every command (sysexits where one fits), so scripts and systemd can tell them apart."""

EXIT_OK = 0
EXIT_FAILURE = 1      # a runtime failure: broker, outputs
EXIT_USAGE = 2        # argparse's own
EXIT_DATAERR = 65     # `render`: the input is not a result message (sysexits EX_DATAERR)
EXIT_UNAVAILABLE = 69  # `check --broker`: no node of the broker answered (sysexits EX_UNAVAILABLE)
EXIT_CONFIG = 78      # the config or a format is invalid (sysexits EX_CONFIG); no restart helps
