"""Engine commands of the CLI (train, serve, cluster, validate ...), one module each."""

from enum import StrEnum


class OutputFormat(StrEnum):
    """Output format of every command: a rich table (the default) or JSON."""

    table = "table"
    json = "json"
