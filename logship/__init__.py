"""logship: MailerQ delivery results from RabbitMQ to logs, through formats users write."""

__version__ = "0.1.0"
