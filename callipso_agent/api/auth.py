"""Bearer-token authentication of the HTTP API, as an aiohttp middleware.

Tokens are configured as sha256 hashes (``agent.http.tokens``: name, sha256, scopes); the presented
token is hashed and compared with every configured hash in constant time. Reads (GET/HEAD) need the
``read`` scope, other methods ``write`` (``admin`` grants both); reads are open without a token from
loopback when ``open_reads`` is set. Missing token → 401, wrong token or missing scope → 403. A client
that presents too many wrong tokens (``max_failures`` within ``window`` seconds) is answered 429 with
Retry-After until its oldest failure leaves the window, whatever it presents, a valid token included.

A client is its peer address; IPv6 clients count per /64 (one host usually holds a whole /64, so counting per
address would let it try 2**64 times). The failure table holds at most ``max_clients`` clients: past that the
client whose last failure is oldest is forgotten, so memory stays bounded however many addresses an
attacker uses. Refusals are counted (:class:`AuthCounters`, on /metrics) and logged with the client and the
path, never with the token presented.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from callipso_agent.clock import Clock
from callipso_agent.config.models import ApiToken

log = structlog.get_logger()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC = frozenset({"/api/v1/openapi.json"})


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    scopes: frozenset[str]
    token: bool  # False: anonymous read from loopback

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


# typed request storage key (aiohttp >= 3.12), a plain string before
PRINCIPAL: Any = web.RequestKey("principal", Principal) if hasattr(web, "RequestKey") else "principal"


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def client_key(remote: str | None) -> str:
    """The unit the limiter counts: the IPv4 address, or the /64 of an IPv6 address."""
    if not remote:
        return "unknown"
    try:
        ip = ipaddress.ip_address(remote)
    except ValueError:
        return remote
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass
class AuthCounters:
    """Refused API requests since the start: failed authentications by reason, and 429 answers."""

    failures: dict[str, int] = field(default_factory=dict)  # missing_token, invalid_token, scope
    throttled: int = 0

    def fail(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1


class FailureLimiter:
    """Per-client sliding window of failed authentications (bounded memory)."""

    def __init__(
        self, clock: Clock, *, max_failures: int = 10, window: float = 300.0, max_clients: int = 10_000
    ) -> None:
        self.clock = clock
        self.max_failures = max_failures
        self.window = window
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str) -> deque[float]:
        now = self.clock.monotonic()
        q = self._failures.get(client)
        if q is None:
            return deque()
        while q and now - q[0] >= self.window:
            q.popleft()
        if not q:
            del self._failures[client]
        return q

    def blocked_for(self, client: str) -> float | None:
        q = self._recent(client)
        if len(q) < self.max_failures:
            return None
        return max(self.window - (self.clock.monotonic() - q[0]), 1.0)

    def fail(self, client: str) -> None:
        q = self._failures.setdefault(client, deque())
        self._failures.move_to_end(client)
        q.append(self.clock.monotonic())
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)

    def __len__(self) -> int:
        return len(self._failures)


class TokenAuth:
    def __init__(
        self,
        tokens: Sequence[ApiToken],
        clock: Clock,
        *,
        open_reads: bool = True,
        max_failures: int = 10,
        window: float = 300.0,
        max_clients: int = 10_000,
        prefix: str = "/api/",
    ) -> None:
        self._tokens = [(t.name, bytes.fromhex(t.sha256), frozenset(t.scopes)) for t in tokens]
        self.open_reads = open_reads
        self.prefix = prefix
        self.limiter = FailureLimiter(clock, max_failures=max_failures, window=window, max_clients=max_clients)
        self.counters = AuthCounters()

    def _match(self, presented: str) -> tuple[str, frozenset[str]] | None:
        digest = hashlib.sha256(presented.encode("utf-8")).digest()
        found: tuple[str, frozenset[str]] | None = None
        for name, expected, scopes in self._tokens:  # every hash is compared: no early exit
            if hmac.compare_digest(digest, expected) and found is None:
                found = (name, scopes)
        return found

    @staticmethod
    def _loopback(remote: str | None) -> bool:
        try:
            return remote is not None and ipaddress.ip_address(remote).is_loopback
        except ValueError:
            return False

    def check(self, request: web.Request) -> Principal | web.Response:
        client = client_key(request.remote)
        scope = "read" if request.method in READ_METHODS else "write"
        wait = self.limiter.blocked_for(client)
        if wait is not None:
            self.counters.throttled += 1
            return _json_error(
                429,
                "too many failed authentication attempts; try again later",
                {"Retry-After": str(int(wait + 0.999))},
            )
        header = request.headers.get("Authorization")
        if header is None:
            if scope == "read" and self.open_reads and self._loopback(request.remote):
                return Principal("anonymous@loopback", frozenset({"read"}), token=False)
            self.counters.fail("missing_token")
            return _json_error(
                401, "a bearer token is required", {"WWW-Authenticate": 'Bearer realm="callipso"'}
            )
        kind, _, presented = header.partition(" ")
        matched = self._match(presented.strip()) if kind.lower() == "bearer" and presented.strip() else None
        if matched is None:
            self.limiter.fail(client)
            self.counters.fail("invalid_token")
            blocked = self.limiter.blocked_for(client) is not None
            # the audit line names the client and the request, never what was presented
            log.warning("api_auth_failed", client=client, method=request.method, path=request.path,
                        throttled_from_now=blocked)
            return _json_error(403, "invalid token")
        name, scopes = matched
        principal = Principal(name, scopes, token=True)
        if not principal.allows(scope):
            self.counters.fail("scope")
            log.warning("api_scope_denied", client=client, token_name=name, path=request.path, needed=scope)
            return _json_error(403, f"token {name!r} lacks the {scope!r} scope")
        return principal

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(self.prefix) or request.path in PUBLIC:
            return await handler(request)
        outcome = self.check(request)
        if isinstance(outcome, web.Response):
            return outcome
        request[PRINCIPAL] = outcome
        return await handler(request)
