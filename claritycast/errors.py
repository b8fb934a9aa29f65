"""Every error claritycast raises, in one tree.

Callers decide what to do next from the branch, never from a library's own
exception types: adapters translate at their boundary (``raise Mapped(...) from
exc``), so agents and the CLI import nothing from pymongo or aiokafka.

::

    ClarityCastError
    ├── ConfigError                 a setting is invalid: fix the configuration
    ├── InputError                  an operator's input is wrong (bad timezone); ``field`` names it
    │   ├── NotFound                    no such project, organisation, connection, …
    │   ├── Conflict                    it exists already, or its state forbids the action
    │   └── QuotaRefused                no request may be made now; ``next_possible_at`` says when
    ├── ClarityError                the Clarity Data Export API (status, redacted request)
    │   ├── ClarityRetryable        the same request may work later (inside the quota)
    │   │   ├── ClarityServerError      5xx
    │   │   ├── ClarityUnreachable      timeout, refused, reset
    │   │   └── ClarityGarbled          200 that is empty, an HTML page or cut short
    │   └── ClarityPermanent        retrying cannot help
    │       ├── ClarityBadRequest       400: our bug; dead-letter with the request
    │       ├── ClarityTokenInvalid     401, or refused locally before any request
    │       ├── ClarityForbidden        403
    │       ├── ClarityQuotaExhausted   429: exhausted until the next local midnight
    │       └── ClarityMalformed        200 with JSON of the wrong shape, or not JSON at all
    ├── EmbeddedError               the embedded Kafka/MongoDB servers
    │   ├── AlreadyRunning          `up` on a data folder that is already up
    │   ├── NotRunning              a command needs servers that are not up
    │   └── ServerFailedToStart     a server exited or never listened
    ├── BrokerUnavailable           Kafka cannot be reached from a command
    ├── StageError                  a worker was asked for a stage it cannot run
    ├── TokenUnreadable             a stored Clarity token cannot be decrypted: not fetched
    │   ├── TokenKeyMissing             sealed with a key that is not in the keyring
    │   ├── TokenForAnotherProject      sealed for another project (moved or copied)
    │   └── TokenTampered               changed since it was sealed, or never sealed
    ├── MessageTooLarge             a record is over the topics' size bound: a bug, dead-lettered
    ├── DeliveryError               Slack or SMTP did not take a report (``reason``)
    │   ├── DeliveryRetryable           transient (rate limit past the deadline, 5xx, network)
    │   └── DeliveryPermanent           retrying cannot help: pause the connection
    └── StoreError                  MongoDB
        └── StoreUnavailable        cannot reach the server: retry later

Messages are one line, written for the operator, and never carry a secret.
"""

from __future__ import annotations

from datetime import datetime


class ClarityCastError(Exception):
    """Root of every error claritycast raises on purpose."""


class ConfigError(ClarityCastError):
    """A setting is missing or invalid; the message names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"invalid setting {setting}: {problem}")


class InputError(ClarityCastError):
    """An operator's input cannot be used; the message says what to change.

    ``field`` names the input at fault, when there is one (``timezone``,
    ``token``), so a form or an API client can show the message next to it.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class NotFound(InputError):
    """What the input names does not exist."""


class Conflict(InputError):
    """The input is valid, but clashes with what exists (a taken name, a paused connection)."""


class QuotaRefused(InputError):
    """Nothing may be asked of Clarity for this project now (a 429, or no headroom).

    ``next_possible_at`` is when it may, if known.
    """

    def __init__(
        self,
        message: str,
        *,
        next_possible_at: datetime | None = None,
        refreshes_left: int | None = None,
    ) -> None:
        self.next_possible_at = next_possible_at
        self.refreshes_left = refreshes_left
        super().__init__(message)


class ClarityError(ClarityCastError):
    """A Clarity request failed; ``status`` is the HTTP status (None: no answer).

    ``request`` describes the request without its token, e.g.
    ``GET /export-data/api/v1/project-live-insights?numOfDays=1&dimension1=URL``.
    """

    outcome = "failed"  # how the call log records this failure

    def __init__(self, message: str, *, status: int | None = None, request: str = "") -> None:
        self.status = status
        self.request = request
        where = f" ({request})" if request else ""
        super().__init__(f"{message}{where}")


class ClarityRetryable(ClarityError):
    """The same request may succeed later; retry with backoff, inside the quota."""


class ClarityServerError(ClarityRetryable):
    """Clarity answered 5xx (often 500 with an empty body, for days at a time)."""

    outcome = "server error"


class ClarityUnreachable(ClarityRetryable):
    """No answer: timeout, connection refused or reset."""

    outcome = "unreachable"


class ClarityBodyError(ClarityError):
    """A 200 whose body could not be used; ``body`` keeps its start for the dead letter."""

    def __init__(
        self, message: str, *, body: bytes = b"", status: int | None = 200, request: str = ""
    ) -> None:
        self.body = body
        super().__init__(message, status=status, request=request)


class ClarityGarbled(ClarityBodyError, ClarityRetryable):
    """200 with an empty body, an HTML page or a body cut short: an outage, not an answer.

    A gateway or proxy in front of the API answers like this while the API is
    down; the same request a few minutes later works, so it is retried like a 5xx.
    """

    outcome = "garbled response"


class ClarityPermanent(ClarityError):
    """Retrying the same request cannot help."""


class ClarityBadRequest(ClarityPermanent):
    """400: our parameters are wrong; a bug on our side."""

    outcome = "bad request"


class ClarityTokenInvalid(ClarityPermanent):
    """401, or a token refused locally (not a JWT, expired, wrong audience)."""

    outcome = "token invalid"


class ClarityForbidden(ClarityPermanent):
    """403: the token is not allowed to export this project."""

    outcome = "forbidden"


class ClarityQuotaExhausted(ClarityPermanent):
    """429: the project's daily requests are spent (possibly by another tool)."""

    outcome = "quota exhausted"


class ClarityMalformed(ClarityBodyError, ClarityPermanent):
    """200 with complete JSON not shaped as documented, or a body that is not JSON at all.

    The same request would get the same answer: a dead letter at once.
    """

    outcome = "malformed response"


class EmbeddedError(ClarityCastError):
    """Something about the embedded broker and database went wrong."""


class AlreadyRunning(EmbeddedError):
    """The data folder is already served by a running `claritycast up`."""


class NotRunning(EmbeddedError):
    """No running `claritycast up` serves this data folder."""


class ServerFailedToStart(EmbeddedError):
    """An embedded server exited early or never accepted connections."""


class BrokerUnavailable(ClarityCastError):
    """Kafka could not be reached or refused a message sent by a command."""


class StageError(ClarityCastError):
    """A worker was asked to run a stage that does not exist."""


class DeliveryError(ClarityCastError):
    """A destination (Slack or SMTP) did not take a report.

    ``reason`` is short and machine-readable (``not_in_channel``,
    ``smtp_auth_failed``, ``unreachable``); the message is for the operator.
    Neither ever carries a token or a password.
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class DeliveryRetryable(DeliveryError):
    """The same delivery may work later: network, 5xx, rate limits past the deadline."""


class DeliveryPermanent(DeliveryError):
    """Retrying cannot help (revoked token, unknown channel, refused recipients).

    The connection is paused with ``reason`` until an operator resumes it.
    """


class TokenUnreadable(ClarityCastError):
    """A stored Clarity token cannot be decrypted; the project is not fetched.

    ``kind`` names why in two words (for the project's status) and
    ``key_id`` the key it was sealed with; neither is secret.
    """

    kind = "unreadable"

    def __init__(self, message: str, key_id: str | None) -> None:
        self.key_id = key_id
        super().__init__(message)


class TokenKeyMissing(TokenUnreadable):
    """Sealed with a key the keyring does not hold (it was dropped too early, or never given)."""

    kind = "key missing"

    def __init__(self, key_id: str, source: str) -> None:
        super().__init__(f"sealed with key {key_id}, which {source} does not hold", key_id)


class TokenForAnotherProject(TokenUnreadable):
    """Sealed for another project: the ciphertext was moved or copied in the database."""

    kind = "another project's"

    def __init__(self, key_id: str) -> None:
        super().__init__(
            "sealed for another project: it was moved or copied in the database", key_id
        )


class TokenTampered(TokenUnreadable):
    """The ciphertext fails its authenticity check: it was changed after it was sealed."""

    kind = "tampered"

    def __init__(self, key_id: str | None) -> None:
        what = "changed since it was sealed" if key_id else "not a sealed token"
        super().__init__(f"it fails its authenticity check: {what}", key_id)


class MessageTooLarge(ClarityCastError):
    """A record would be over the bound every topic keeps (``topics.MAX_MESSAGE_BYTES``).

    Large things travel by reference, so this is a bug: the message is
    dead-lettered with the error, and the stream moves on.
    """


class StoreError(ClarityCastError):
    """MongoDB refused or failed an operation; retrying will not help."""


class StoreUnavailable(StoreError):
    """MongoDB could not be reached or timed out; the same call may work later."""
