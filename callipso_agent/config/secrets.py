"""Secret references: a secret is read from an environment variable or a file, never written inline.

A resolved secret is a :class:`Secret`, whose repr and str never show the value.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, model_validator

from callipso_agent.errors import ConfigError


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class SecretRef(BaseModel):
    """``{env: NAME}`` or ``{file: PATH}`` (relative paths are relative to the config file's folder)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret reference needs exactly one of 'env' or 'file'")
        return self

    def describe(self) -> str:
        return f"env:{self.env}" if self.env else f"file:{self.file}"

    def resolve(self, base_dir: Path | None = None) -> Secret:
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise ConfigError(f"environment variable {self.env} is not set", field="secret")
            return Secret(value)
        assert self.file is not None
        path = Path(self.file)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            return Secret(path.read_text(encoding="utf-8").strip("\r\n"))
        except OSError as err:
            raise ConfigError(f"cannot read secret file: {err.strerror}", file=str(path), field="secret") from err
