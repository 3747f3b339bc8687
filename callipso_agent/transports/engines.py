"""The SNMP engines of a process and the choice of client per device.

SNMP v1/v2c goes through :class:`~callipso_agent.transports.fastsnmp.FastSnmpClient` (``client="fast"``, the
default) or pysnmp (``client="pysnmp"``); SNMPv3 always goes through pysnmp. Both engines share one
concurrency limit. Each engine is created on first use, so a v2c-only estate never pays pysnmp's set-up.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from callipso_agent.config.models import SnmpV2Credential, SnmpV3Credential
from callipso_agent.config.secrets import Secret
from callipso_agent.transports.fastsnmp import FastSnmpClient, FastSnmpEngine
from callipso_agent.transports.snmp import PysnmpClient, PysnmpEngine, SnmpClient

SnmpClientKind = Literal["fast", "pysnmp"]


class SnmpEngines:
    def __init__(self, max_concurrency: int = 64, client: SnmpClientKind = "fast", *,
                 pysnmp: PysnmpEngine | None = None) -> None:
        """``pysnmp``: an existing pysnmp engine to use (it is not closed by :meth:`close`)."""
        if client not in ("fast", "pysnmp"):
            raise ValueError(f"unknown SNMP client {client!r} (fast or pysnmp)")
        self.client = client
        self.semaphore = pysnmp.semaphore if pysnmp is not None else asyncio.Semaphore(max_concurrency)
        self._max_concurrency = max_concurrency
        self._pysnmp = pysnmp
        self._own_pysnmp = pysnmp is None
        self._fast: FastSnmpEngine | None = None

    @property
    def fast(self) -> FastSnmpEngine:
        if self._fast is None:
            self._fast = FastSnmpEngine(semaphore=self.semaphore)
        return self._fast

    @property
    def pysnmp(self) -> PysnmpEngine:
        if self._pysnmp is None:
            self._pysnmp = PysnmpEngine(self._max_concurrency)
            self._pysnmp.semaphore = self.semaphore
        return self._pysnmp

    def client_for(self, host: str, port: int, credential: SnmpV2Credential | SnmpV3Credential,
                   secrets: dict[str, Secret], *, timeout: float = 5.0, retries: int = 1,
                   max_repetitions: int = 25) -> SnmpClient:
        if isinstance(credential, SnmpV2Credential) and self.client == "fast":
            return FastSnmpClient(self.fast, host, port, credential, secrets, timeout=timeout, retries=retries,
                                  max_repetitions=max_repetitions)
        return PysnmpClient(self.pysnmp, host, port, credential, secrets, timeout=timeout, retries=retries,
                            max_repetitions=max_repetitions)

    def stats(self) -> dict[str, int]:
        """Counters of the fast engine (zeros before its first use)."""
        if self._fast is None:
            return {}
        s = self._fast.stats
        return {"requests": s.requests, "retransmissions": s.retransmissions, "responses": s.responses,
                "timeouts": s.timeouts, "ignored": s.ignored, "malformed": s.malformed, "send_errors": s.send_errors,
                "slots_given_back": s.slots_given_back}

    def close(self) -> None:
        if self._fast is not None:
            self._fast.close()
            self._fast = None
        if self._pysnmp is not None and self._own_pysnmp:
            self._pysnmp.close()
            self._pysnmp = None
