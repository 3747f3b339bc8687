"""Error taxonomy. Library exceptions are translated at the boundary with ``raise ... from err``."""

from __future__ import annotations


class CallipsoError(Exception):
    """Root of every error the agent raises on purpose."""

    kind = "error"


class ConfigError(CallipsoError):
    """A configuration, inventory, profile or rule file is invalid.

    Carries the file, the line and the field so an operator can fix it without guessing.
    """

    kind = "config_error"

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where += f":{self.line}"
        if self.field:
            where += f": field '{self.field}'"
        return f"{where}: {self.message}"


class ConfigErrors(CallipsoError):
    """Several configuration errors found at once."""

    kind = "config_error"

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class ProfileError(ConfigError):
    kind = "profile_error"


class RuleError(ConfigError):
    kind = "rule_error"


class TransportError(CallipsoError):
    """A device could not be talked to."""

    kind = "transport_error"


class Unreachable(TransportError):
    kind = "unreachable"


class Timeout(TransportError):
    kind = "timeout"


class AuthFailed(TransportError):
    kind = "auth_failed"


class HostKeyError(AuthFailed):
    kind = "host_key"


class ParseError(CallipsoError):
    """A device answered something we cannot read; the raw text is kept for the incident."""

    kind = "parse_error"

    def __init__(self, message: str, raw: str | None = None) -> None:
        self.raw = raw
        super().__init__(message)


class NotStored(CallipsoError):
    """Changes accepted in memory that the store could not write yet (they are retried on the engine's tick).
    A sender that retries, such as Alertmanager, is told to send again: until they are written, a stop of the
    agent would lose them."""

    kind = "store_unavailable"

    def __init__(self, message: str, keys: list[str] | None = None) -> None:
        self.keys = keys or []
        super().__init__(message)


class NoProfile(CallipsoError):
    kind = "no_profile"

    def __init__(self, message: str, candidates: list[str] | None = None) -> None:
        self.candidates = candidates or []
        super().__init__(message)
