"""Exceptions that carry a message meant for the operator."""


class GenrecError(Exception):
    """Base class for errors genrec reports to its operator."""


class ConfigError(GenrecError):
    """A setting or parameter is invalid; the message names it and what was expected."""


class DataError(GenrecError):
    """Input data is unusable (missing column, too many rejected rows, no data)."""


class ServiceError(GenrecError):
    """A service genrec talks to (Postgres, S3) is unreachable or misbehaves."""


class GateRejected(GenrecError):
    """The quality gate refused to publish a run's lists (the reasons are in the message)."""


class TrainingError(GenrecError):
    """No model could be trained (e.g. every selection candidate failed); the message says why for each."""
