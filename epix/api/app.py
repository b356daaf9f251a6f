"""The FastAPI application factory: one node, one database, versioned routes under /v1."""

from __future__ import annotations

from anyio import CapacityLimiter
from fastapi import FastAPI
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from epix.api.access_log import redact_access_log
from epix.api.limits import BodySizeLimit, RefuseCodings, RefuseNulCharacters
from epix.api.metrics import Metrics, MetricsMiddleware
from epix.api.metrics import router as metrics_router
from epix.api.openapi import install_openapi
from epix.api.problems import install_problem_handlers
from epix.api.reference import install_api_reference
from epix.api.request_id import RequestId
from epix.api.routers import audit, auth, health, messages, permits, reports
from epix.api.routers import endorsements as endorsements_routes
from epix.api.routers import inbox as inbox_router
from epix.api.routers import outbox as outbox_routes
from epix.api.routers import registry as registry_routes
from epix.api.routers import webhooks as webhook_routes
from epix.api.security_headers import SecurityHeaders
from epix.audit.service import AuditPolicy, configure_audit
from epix.auth.session_secret import derived_key, session_secret
from epix.auth.throttle import KEY_PURPOSE as THROTTLE_KEY_PURPOSE
from epix.auth.throttle import Throttle
from epix.compliance import load_reference_data
from epix.db import Database
from epix.settings import Settings, get_settings
from epix.web.pages import mount_web


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    load_reference_data()  # a broken quota or reservation table stops the node here
    database = database or Database(settings.effective_database_url)
    app = FastAPI(
        title="EPIX",
        summary="Electronic permit information exchange for CITES permits and certificates.",
        description="Systems authenticate with `Authorization: Bearer <API key>`; the node's web "
        "pages use the session cookie of `POST /v1/auth/login`. Every refusal is RFC 9457 "
        "problem+json whose `code` comes from the node's one error table (`epix errors`); each "
        "operation below lists the codes it can answer with, by HTTP status.",
        version="1.0",
        openapi_url="/openapi.json",
        docs_url=None,  # /docs and /redoc: install_api_reference
        redoc_url=None,
    )
    app.state.settings = settings
    redact_access_log()  # a permit's security token comes as ?token=; uvicorn logs query strings
    app.state.database = database
    # How many submissions run their pipeline at once (routers/messages.py); FIFO beyond that.
    app.state.pipeline_limiter = CapacityLimiter(settings.pipeline_concurrency)
    throttle_key = derived_key(settings, THROTTLE_KEY_PURPOSE)
    app.state.login_throttle = Throttle(
        "login",
        settings.login_max_failures,
        settings.login_failure_window_seconds,
        key=throttle_key,
    )
    app.state.login_address_throttle = Throttle(
        "login-address",
        settings.login_address_max_failures,
        settings.login_failure_window_seconds,
        key=throttle_key,
    )
    app.state.credential_throttle = Throttle(
        "credential",
        settings.refused_credential_max,
        settings.refused_credential_window_seconds,
        key=throttle_key,
    )
    install_problem_handlers(app)
    # Behind a TLS proxy, EPIX_NODE_BASE_URL=https://... marks the session cookie Secure.
    on_https = settings.node_base_url.startswith("https://")
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RefuseCodings)
    app.add_middleware(RefuseNulCharacters)
    app.state.metrics = Metrics()
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.include_router(metrics_router)
    app.include_router(health.router)
    configure_audit(AuditPolicy.for_node(settings))
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(settings),
        session_cookie="epix_session",
        max_age=8 * 3600,
        same_site="lax",
        https_only=on_https,
    )
    app.add_middleware(RequestId)  # outermost: every answer, refusals by the others included
    api_routers = (
        health.router,
        auth.router,
        messages.router,
        inbox_router.router,
        # Before permits: its GET /v1/permits/{party}/{number:path} would swallow .../ledger.
        endorsements_routes.router,
        permits.router,
        webhook_routes.router,
        outbox_routes.router,
        registry_routes.router,
        audit.router,
        reports.router,
    )
    for router in api_routers[1:]:  # health's is included above, outside the sessions
        app.include_router(router)
    install_openapi(app, api_routers)
    install_api_reference(app)
    mount_web(app)
    static = tuple(
        f"{route.path}/"
        for route in app.routes
        if isinstance(route, Mount) and isinstance(route.app, StaticFiles)
    )
    # Last added, so outermost: refusals of the other middlewares carry the headers too.
    app.add_middleware(SecurityHeaders, https=on_https, static_prefixes=static)
    return app
