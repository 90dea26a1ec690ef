"""The only part that knows pika: TLS, the cluster's nodes, a connection to one, the consuming loop and its batches, the frame reader."""
