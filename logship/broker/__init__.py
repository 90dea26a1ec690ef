"""The broker side: settings, TLS and the cluster's nodes (consumer.py holds the pika connection)."""
