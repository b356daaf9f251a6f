"""Who is calling: API keys for systems, signed session cookies for people on the web pages.

``CurrentPrincipal`` authenticates; ``require_roles(...)`` also authorises. The principal is
kept on ``request.state.principal`` for logging and audit. Credentials are never logged.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from anyio import to_thread
from fastapi import Depends, Request

from epix.api.deps import DatabaseDep, request_context
from epix.audit.service import record_event
from epix.auth.principal import Principal, Role
from epix.auth.scoping import ensure_role
from epix.auth.service import authenticate_api_key, authenticate_session
from epix.auth.throttle import Refusal, Throttle, address_source
from epix.db import Database
from epix.delivery.webhooks import http_origin
from epix.errors import EpixError, Finding
from epix.settings import Settings

SESSION_USER = "uid"
SESSION_EPOCH = "epoch"
SESSION_SINCE = "since"  # when the person logged in (Unix time)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def presented_api_key(request: Request) -> str | None:
    """The API key from ``Authorization: Bearer`` or ``X-API-Key``, if any was sent."""
    authorization = request.headers.get("authorization")
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise EpixError.of(
                "EPIX-AUTH-001",
                "Send the API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
                "Authorization",
            )
        return value.strip()
    api_key = request.headers.get("x-api-key")
    return api_key.strip() if api_key is not None else None


def web_session(request: Request) -> dict[str, object] | None:
    if "session" not in request.scope:
        return None
    session: dict[str, object] = request.session
    return session


def check_same_origin(request: Request) -> None:
    """Cookie-authenticated requests must come from our own pages (cross-site request forgery).

    Reads too: the session cookie (SameSite=Lax) goes along when another site sends the browser
    to a /v1 address, and a GET there is not harmless: it leases the Party's inbox or records a
    permit lookup in the person's name. Browsers say where a request comes from
    (Sec-Fetch-Site): only our own pages and an address typed by the person ("none") pass.
    Writes must also carry no other site's Origin (for browsers without Sec-Fetch-Site), nor,
    when they carry no Origin, another site's Referer: scheme, host and port must be the node's
    (``own_origins``). A request with neither (a script, the command line) passes.
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        raise EpixError.of(
            "EPIX-AUTH-012",
            "The request came from another site (its Sec-Fetch-Site is not same-origin); "
            "use the node's own pages.",
            "Sec-Fetch-Site",
        )
    if request.method in _SAFE_METHODS:
        return
    header = "Origin" if "origin" in request.headers else "Referer"
    origin = request.headers.get(header)
    if origin is None:
        return
    if http_origin(origin) not in own_origins(request):
        raise EpixError.of(
            "EPIX-AUTH-012",
            f"The request came from another site (its {header} is not this node's); use the "
            "node's own pages.",
            header,
        )


def check_same_origin_audited(request: Request, database: DatabaseDep, credential: str) -> None:
    """``check_same_origin`` for a route that checks it before any session is read: a login
    (``credential="password"``; else another site's page could log the browser into an account
    of its choosing, which would then record what the person enters) and the logout. The
    refusal is audited and throttled as a refused session is (``auth.refused``)."""
    _checked(request, database, _same_origin, credential=credential)


def _same_origin(request: Request, _database: DatabaseDep) -> None:
    check_same_origin(request)


def own_origins(request: Request) -> set[tuple[str, str, int] | None]:
    """The origins (scheme, host, port) of this node's pages: ``EPIX_NODE_BASE_URL``'s, and the
    address the request was sent to (its Host), whose scheme is https whenever the base URL's
    is: a node served over https is another origin at http://, even where a TLS proxy in front
    passes requests on over http. Else the request's own scheme (uvicorn takes it from a
    trusted proxy's X-Forwarded-Proto)."""
    settings: Settings = request.app.state.settings
    base = http_origin(settings.node_base_url)
    scheme = "https" if base is not None and base[0] == "https" else request.url.scheme
    return {base, http_origin(f"{scheme}://{request.headers.get('host', '')}")} - {None}


def throttled_address(request: Request) -> str:
    """The client's address as the throttles count it (``address_source``: IPv6 by its /64)."""
    return address_source(request.client.host) if request.client else ""


def start_web_session(request: Request, principal: Principal, epoch: int) -> None:
    """Log a person in on this browser (after their password was checked)."""
    session = web_session(request)
    if session is None:
        raise RuntimeError("SessionMiddleware is not installed")
    session.clear()
    session[SESSION_USER] = principal.user_id
    session[SESSION_EPOCH] = epoch
    session[SESSION_SINCE] = int(time.time())


def end_web_session(request: Request) -> None:
    session = web_session(request)
    if session is not None:
        session.clear()


def get_current_principal(request: Request, database: DatabaseDep) -> Principal:
    """The authenticated caller, or a refusal (EPIX-AUTH-001/002/003/006/009/011/012).

    A presented credential that is refused (a wrong, revoked or expired key, a malformed
    Authorization header, a session that ended) is an audit event, as a failed login is; a
    request that presents none is not. Authentication that succeeds writes nothing. Past
    EPIX_REFUSED_CREDENTIAL_MAX refusals from one address the answer is 429 EPIX-AUTH-011 and
    only the first of that stretch is audited, so made-up keys cannot grow the audit trail
    without limit.
    """
    principal = _checked(request, database, _presented_principal)
    if principal is None:
        raise EpixError.of(
            "EPIX-AUTH-001",
            "Authenticate with an API key (Authorization: Bearer <key>) or log in.",
            "Authorization",
        )
    request.state.principal = principal
    return principal


async def presented_key_principal(request: Request, database: DatabaseDep) -> Principal | None:
    """On a public route: whom a presented API key names, None when none is presented (the
    caller is served as anyone). A presented key that is refused is refused as on every other
    route (401/403, audited, throttled): a caller who chose to authenticate is never served as
    anonymous instead (fail closed). Session cookies are not read.

    ``async def``: a request presenting no key costs no thread-pool hop.
    """
    if "authorization" not in request.headers and "x-api-key" not in request.headers:
        return None
    principal = await to_thread.run_sync(_checked, request, database, _api_key_principal)
    if principal is not None:
        request.state.principal = principal
    return principal


def _checked(
    request: Request,
    database: DatabaseDep,
    presented: Callable[[Request, DatabaseDep], Principal | None],
    credential: str | None = None,
) -> Principal | None:
    """``presented(request, database)``, with a refused credential audited and counted
    against the client's address (EPIX-AUTH-011 past the limit). ``credential`` names what
    was presented in the audit row (default: ``api_key`` or ``session``, from the headers)."""
    try:
        return presented(request, database)
    except EpixError as refusal:
        throttled = _record_refused_credential(request, database, refusal, credential)
        if throttled is not None:
            raise EpixError(
                [
                    Finding(
                        "EPIX-AUTH-011",
                        "Too many refused credentials from your address; "
                        f"try again in {throttled.retry_after} s.",
                        refusal.findings[0].location,
                    )
                ],
                retry_after_seconds=throttled.retry_after,
            ) from None
        raise


def _api_key_principal(request: Request, database: DatabaseDep) -> Principal | None:
    """Whom the presented API key names; None when none was presented."""
    raw_key = presented_api_key(request)
    if raw_key is None:
        return None
    with database.read() as session:
        return authenticate_api_key(session, raw_key)


def _presented_principal(request: Request, database: DatabaseDep) -> Principal | None:
    """Whom the presented API key or session cookie names; None when neither was presented."""
    principal = _api_key_principal(request, database)
    if principal is not None:
        return principal
    web = web_session(request)
    user_id = web.get(SESSION_USER) if web else None
    epoch = web.get(SESSION_EPOCH) if web else None
    if web is None or not isinstance(user_id, int) or not isinstance(epoch, int):
        return None
    check_same_origin(request)
    try:
        _ensure_within_lifetime(request, web)
        with database.read() as session:
            return authenticate_session(session, user_id, epoch)
    except EpixError:
        web.clear()
        raise


def _ensure_within_lifetime(request: Request, web: dict[str, object]) -> None:
    """A session ends EPIX_WEB_SESSION_MAX_SECONDS after its login, even one in constant use
    (the cookie is re-signed at every answer, so its own 8-hour limit only ends idle ones):
    a copied cookie does not stay good for ever. A session from before this rule has no login
    time and ends too."""
    settings: Settings = request.app.state.settings
    since = web.get(SESSION_SINCE)
    if not isinstance(since, int) or time.time() - since >= settings.web_session_max_seconds:
        raise EpixError.of(
            "EPIX-AUTH-009", "The web session has lasted its longest; log in again.", "session"
        )


def _record_refused_credential(
    request: Request, database: DatabaseDep, refusal: EpixError, credential: str | None
) -> Refusal | None:
    """Count the refusal against the client's address and audit it (``auth.refused``); past
    the limit, return the throttle's refusal, audited once per stretch (``auth.throttled``)."""
    headers = dict(request.headers.items())
    presented = credential or (
        "session" if not ({"authorization", "x-api-key"} & headers.keys()) else "api_key"
    )
    throttle: Throttle = request.app.state.credential_throttle
    address = throttled_address(request)
    with database.read() as session:
        throttled = throttle.is_refusing(session, address)
    if throttled is not None:
        return throttled  # this stretch is already in the audit trail: write nothing
    with database.unit_of_work() as session:
        throttled = throttle.count(session, address)
        if throttled is not None and not throttled.first:
            return throttled  # another process audited this stretch meanwhile
        action, outcome = "auth.refused", refusal.findings[0].code
        detail: dict[str, object] = {"credential": presented}
        if throttled is not None:
            action, outcome = "auth.throttled", "EPIX-AUTH-011"
            detail["refused_code"] = refusal.findings[0].code
        record_event(
            session,
            action=action,
            outcome=outcome,
            actor=None,
            party=None,
            request=request_context(request, headers),
            detail=detail,
        )
    return throttled


def record_denied(
    request: Request,
    database: DatabaseDep,
    principal: Principal,
    refusal: EpixError,
    *,
    why: bool = False,
) -> None:
    """Audit an authenticated caller refused for their role (EPIX-AUTH-004) or their Party
    (EPIX-AUTH-005): an attempt beyond one's rights is evidence, as a refused credential is.
    ``why`` keeps the refusal's message too (when it names what was attempted)."""
    detail: dict[str, object] = {"roles": sorted(role.value for role in principal.roles)}
    if why:
        detail["refusal"] = refusal.findings[0].message
    _record_refusal(
        request, database, refusal, action="auth.denied", principal=principal, detail=detail
    )


def _record_refusal(
    request: Request,
    database: DatabaseDep,
    refusal: EpixError,
    *,
    action: str,
    principal: Principal | None,
    detail: dict[str, object],
) -> None:
    with database.unit_of_work() as session:
        record_event(
            session,
            action=action,
            outcome=refusal.findings[0].code,
            actor=principal,
            party=principal.party if principal else None,
            request=request_context(request, dict(request.headers.items())),
            detail=detail,
        )


CurrentPrincipal = Annotated[Principal, Depends(get_current_principal)]


def require_roles(
    *roles: Role,
) -> Callable[[Principal, Request, Database], Awaitable[Principal]]:
    """A dependency admitting callers holding at least one of ``roles`` (else EPIX-AUTH-004).

    ``async def`` because it only compares roles: a plain ``def`` would cost a thread-pool hop.
    A refusal is audited (``auth.denied``), in a worker thread.
    """

    async def dependency(
        principal: CurrentPrincipal, request: Request, database: DatabaseDep
    ) -> Principal:
        try:
            ensure_role(principal, *roles)
        except EpixError as refusal:
            await to_thread.run_sync(record_denied, request, database, principal, refusal)
            raise
        return principal

    return dependency
