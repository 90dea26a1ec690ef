"""The files a wheel ships beside the code: formats, an example config, the systemd unit, logrotate."""
