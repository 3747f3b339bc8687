"""Settings of the EasyVista connector and of the incident → ticket mapping (YAML ``easyvista:``).

Every identifier (catalog, urgency, severity, impact, location, department, action type, group) is
specific to the customer's EasyVista tenant, so all of them are data here, never code.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from callipso_agent.config.secrets import SecretRef
from callipso_agent.errors import ConfigError, ConfigErrors
from callipso_agent.yamlload import load_yaml, parse_model

# Meta-status GUIDs documented by EasyVista ("Close a ticket").
STATUS_SOLVED = "DC97DD1D-0F35-4153-B0E1-0F2E0155365D"
STATUS_CLOSED = "C3D9DFA7-7A21-46C2-B3A3-8BC50C9FF4F3"

Ident = int | str


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EasyVistaAuth(_Model):
    """HTTP Basic (``username`` + ``password``) or ``Authorization: Bearer`` (``token``)."""

    username: str | None = None
    password: SecretRef | None = None
    token: SecretRef | None = None

    @model_validator(mode="after")
    def _one_method(self) -> EasyVistaAuth:
        basic = self.username is not None or self.password is not None
        if basic and (self.username is None or self.password is None):
            raise ValueError("basic authentication needs both 'username' and 'password'")
        if basic == (self.token is not None):
            raise ValueError("give either 'username' + 'password' (basic) or 'token' (bearer), not both")
        return self


class PriorityFields(_Model):
    urgency_id: Ident | None = None
    severity_id: Ident | None = None
    impact_id: Ident | None = None


class SiteFields(_Model):
    location_id: Ident | None = None
    location_code: str | None = None
    department_id: Ident | None = None
    department_code: str | None = None


class ActionSettings(_Model):
    """How comments (acknowledgements, notes) are added: an action type and the group doing it."""

    action_type_id: Ident | None = None
    action_type_name: str | None = None
    group_id: Ident | None = None
    group_mail: str | None = None
    group_name: str | None = None
    doneby_identification: str | None = None

    @model_validator(mode="after")
    def _mandatory(self) -> ActionSettings:
        if self.action_type_id is None and self.action_type_name is None:
            raise ValueError("an action needs 'action_type_id' (preferred) or 'action_type_name'")
        if self.group_id is None and self.group_mail is None and self.group_name is None:
            raise ValueError("an action needs one of 'group_id', 'group_mail', 'group_name'")
        return self


_CUSTOM = re.compile(r"^e_[a-z0-9_]+$", re.IGNORECASE)


class TicketMapping(_Model):
    catalog_guid: str | None = None
    catalog_code: str | None = None
    priorities: dict[Annotated[str, Field(pattern=r"^P[1-4]$")], PriorityFields] = Field(default_factory=dict)
    sites: dict[str, SiteFields] = Field(default_factory=dict)
    default_site: SiteFields | None = None
    requestor_mail: str | None = None
    requestor_identification: str | None = None
    requestor_name: str | None = None
    recipient_mail: str | None = None
    recipient_identification: str | None = None
    recipient_name: str | None = None
    origin: Ident | None = None
    send_title: bool = Field(
        default=False, description="also send 'title' (not in EasyVista's list; check the tenant)"
    )
    asset_from_device: bool = Field(default=False, description="send the device name as 'asset_name'")
    custom_fields: dict[str, str] = Field(
        default_factory=dict,
        description="e_* fields; values are templates over {id} {key} {title} {priority} {site} {device} "
        "{services} {rule} {opened_at}",
    )
    comment: ActionSettings | None = None
    resolve_as: Literal["solved", "closed"] = "solved"
    status_guid: str | None = Field(default=None, description="override the GUID applied when resolving")

    @model_validator(mode="after")
    def _catalog(self) -> TicketMapping:
        if self.catalog_guid is None and self.catalog_code is None:
            raise ValueError("a ticket needs 'catalog_guid' (preferred) or 'catalog_code'")
        return self

    @field_validator("custom_fields")
    @classmethod
    def _custom_names(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if not _CUSTOM.match(k)]
        if bad:
            raise ValueError(f"custom field names must start with 'e_': {', '.join(sorted(bad))}")
        return v


class EasyVistaSettings(_Model):
    url: Annotated[str, Field(pattern=r"^https?://[^/\s]+", description="https://<host>, without /api/v1")]
    account: Annotated[str, Field(pattern=r"^[0-9]+$", description="50004 production, 50005 sandbox")] = (
        "50004"
    )
    auth: EasyVistaAuth
    timeout: Annotated[float, Field(gt=0, le=300)] = 65.0  # EasyVista may take 60 s before its own timeout
    verify_tls: bool = True
    ca_file: str | None = None
    wrap_actions: bool = Field(
        default=True, description="send actions as {'actions':[{...}]} (else a flat object)"
    )
    target: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$")] = "easyvista"
    concurrency: Annotated[int, Field(ge=1, le=16)] = 2
    reference_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,40}$")] = "CALLIPSO"
    priorities: list[Annotated[str, Field(pattern=r"^P[1-4]$")]] = Field(
        default_factory=lambda: ["P1", "P2", "P3", "P4"], description="priorities that open a ticket"
    )
    language: Literal["fr", "en"] = "fr"
    mapping: TicketMapping


class EasyVistaFile(_Model):
    easyvista: EasyVistaSettings


def easyvista_path(config_path: Path) -> Path:
    """``<config folder>/outputs/easyvista.yaml`` (beside a single config file as well)."""
    folder = config_path if config_path.is_dir() else config_path.parent
    return folder / "outputs" / "easyvista.yaml"


def load_easyvista(path: Path) -> EasyVistaSettings:
    """Load and validate; raise ConfigErrors naming file, line and field."""
    try:
        data = load_yaml(path)
    except ConfigError as err:
        raise ConfigErrors([err]) from None
    return parse_model(EasyVistaFile, data, str(path)).easyvista
