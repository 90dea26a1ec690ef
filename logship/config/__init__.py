"""The TOML config as frozen dataclasses: loading, the schema, the broker, queue and output tables."""
