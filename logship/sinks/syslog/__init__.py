"""Syslog outputs: the sink, a record as a message, the wire format, the transports."""
