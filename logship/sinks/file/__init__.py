"""File outputs: the sink, one log file, rotation, per-record paths."""
