"""The broker side: settings, TLS, the cluster's nodes and pika's connection to one (consumer.py runs the loop, frames.py reads the socket)."""
