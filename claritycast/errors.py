"""Every error claritycast raises, in one tree.

Callers decide what to do next from the branch, never from a library's own
exception types: adapters translate at their boundary (``raise Mapped(...) from
exc``), so agents and the CLI import nothing from pymongo or aiokafka.

::

    ClarityCastError
    ├── ConfigError                 a setting is invalid: fix the configuration
    ├── EmbeddedError               the embedded Kafka/MongoDB servers
    │   ├── AlreadyRunning          `up` on a data folder that is already up
    │   ├── NotRunning              a command needs servers that are not up
    │   └── ServerFailedToStart     a server exited or never listened
    ├── StageError                  a worker was asked for a stage it cannot run
    └── StoreError                  MongoDB
        └── StoreUnavailable        cannot reach the server: retry later

Messages are one line, written for the operator, and never carry a secret.
"""

from __future__ import annotations


class ClarityCastError(Exception):
    """Root of every error claritycast raises on purpose."""


class ConfigError(ClarityCastError):
    """A setting is missing or invalid; the message names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"invalid setting {setting}: {problem}")


class EmbeddedError(ClarityCastError):
    """Something about the embedded broker and database went wrong."""


class AlreadyRunning(EmbeddedError):
    """The data folder is already served by a running `claritycast up`."""


class NotRunning(EmbeddedError):
    """No running `claritycast up` serves this data folder."""


class ServerFailedToStart(EmbeddedError):
    """An embedded server exited early or never accepted connections."""


class StageError(ClarityCastError):
    """A worker was asked to run a stage that does not exist."""


class StoreError(ClarityCastError):
    """MongoDB refused or failed an operation; retrying will not help."""


class StoreUnavailable(StoreError):
    """MongoDB could not be reached or timed out; the same call may work later."""
