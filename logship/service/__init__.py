"""The running daemon: wiring, reload and watching, signals, systemd, metrics, its own logs."""
