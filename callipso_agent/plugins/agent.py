"""The plugins' only resource: the agent's read API over HTTP (short-lived, synchronous, with a timeout)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from callipso_agent.plugins.core import CheckError


class NotFound(CheckError):
    """The agent answered 404: unknown device, or an endpoint this agent version does not have."""


@dataclass(frozen=True)
class AgentClient:
    base_url: str = "http://127.0.0.1:9730"
    timeout: float = 10.0
    token: str | None = None

    def get(self, path: str, **query: str) -> Any:
        url = self.base_url.rstrip("/") + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        if not url.startswith(("http://", "https://")):
            raise CheckError(f"agent URL must be http(s): {self.base_url!r}")
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(url, headers=headers)  # noqa: S310 - scheme checked above
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as rsp:  # noqa: S310
                body = rsp.read()
        except urllib.error.HTTPError as err:
            if err.code == 404:
                raise NotFound(f"{path}: 404 from the agent") from err
            raise CheckError(f"agent answered HTTP {err.code} for {path}") from err
        except TimeoutError as err:
            raise CheckError(f"agent {self.base_url} did not answer within {self.timeout:g}s") from err
        except urllib.error.URLError as err:
            reason = err.reason
            if isinstance(reason, TimeoutError | socket.timeout):
                raise CheckError(f"agent {self.base_url} did not answer within {self.timeout:g}s") from err
            raise CheckError(f"cannot reach the agent at {self.base_url}: {reason}") from err
        except OSError as err:
            raise CheckError(f"cannot reach the agent at {self.base_url}: {err}") from err
        try:
            return json.loads(body)
        except ValueError as err:
            raise CheckError(f"agent sent invalid JSON for {path}") from err

    def device(self, name: str) -> dict[str, Any]:
        try:
            data = self.get(f"/api/v1/devices/{urllib.parse.quote(name, safe='')}")
        except NotFound as err:
            raise CheckError(f"unknown device {name!r} (not in the agent's inventory)") from err
        if not isinstance(data, dict):
            raise CheckError("unexpected answer for a device")
        return data

    def devices(self) -> list[dict[str, Any]]:
        data = self.get("/api/v1/devices")
        return list(data.get("devices", [])) if isinstance(data, dict) else []

    def open_incidents(self) -> list[dict[str, Any]]:
        try:
            data = self.get("/api/v1/incidents", state="open")
        except NotFound as err:
            raise CheckError(
                "this agent has no incidents API (/api/v1/incidents answered 404): "
                "the incident engine is not enabled or the agent is too old"
            ) from err
        items = data.get("incidents", data) if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise CheckError("unexpected answer from /api/v1/incidents")
        return [i for i in items if isinstance(i, dict)]
