"""Pure ASGI middleware (no per-request task or body streaming, unlike
``@app.middleware("http")``, which costs about a millisecond per request), and the filter
that keeps tokens out of the access log."""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import MutableHeaders
from starlette.requests import cookie_parser
from starlette.responses import RedirectResponse
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SESSION_COOKIE = "hecktor_session"
# the cookie of earlier versions, which held the raw API token: cleared, never read
LEGACY_COOKIE = "hecktor_token"
# set in the scope by whoever finds the session cookie invalid: the answer deletes it
CLEAR_SESSION = "hecktor.clear_session_cookie"
HSTS = "max-age=63072000"

BASE_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    # same-origin, not no-referrer: with no-referrer a browser sends ``Origin: null`` on
    # the site's own form posts, and the login form is checked by its Origin
    ("Referrer-Policy", "same-origin"),
)
PAGE_HEADERS = (
    ("X-Frame-Options", "DENY"),
    (
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
    ),
)
_TOKEN_PARAM = re.compile(r"(?i)([?&](?:token|access_token)=)[^&#\s\"]*")
_TOKEN_NAMES = ("token", "access_token")


def redact_tokens(text: str) -> str:
    """``text`` (a request line or URL) with the value of every ``token`` query parameter
    replaced by ``[redacted]``."""
    return _TOKEN_PARAM.sub(r"\1[redacted]", text)


class RedactTokens(logging.Filter):
    """Rewrites log records so that no ``?token=`` value reaches a log (uvicorn's access
    log writes the full path with its query)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "token=" in record.msg.lower():
            record.msg = redact_tokens(record.msg)
        if isinstance(record.args, tuple) and any(
            isinstance(a, str) and "token=" in a.lower() for a in record.args
        ):
            record.args = tuple(redact_tokens(a) if isinstance(a, str) else a for a in record.args)
        return True


def install_log_redaction() -> None:
    """Put :class:`RedactTokens` on uvicorn's loggers (once; a logging configuration
    applied later keeps logger filters)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


def _cookie_names(scope: Scope) -> set[str]:
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            return set(cookie_parser(value.decode("latin-1")))
    return set()


def _has_header(scope: Scope, wanted: bytes) -> bool:
    return any(name == wanted for name, _ in scope.get("headers", ()))


def _deleted_cookie(name: str, secure: bool) -> str:
    return (
        f'{name}=""; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/; HttpOnly; '
        f"SameSite=lax{'; Secure' if secure else ''}"
    )


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(app: ASGIApp | None, path: str, root_path: str = "") -> list[str]:
    """Every method some route of ``app`` accepts on ``path`` (a path may be served by
    several routes, one per method): each method is matched against the routes as a
    request would be."""
    routes = getattr(getattr(app, "router", None), "routes", ())
    allowed: list[str] = []
    for method in METHODS:
        probe = {
            "type": "http",
            "path": path,
            "root_path": root_path,
            "method": method,
            "headers": [],
        }
        for route in routes:
            match, _ = route.matches(dict(probe))
            if match == Match.FULL:
                static = isinstance(route, Mount) and isinstance(route.app, StaticFiles)
                if not static or method in ("GET", "HEAD"):
                    allowed.append(method)
                break
    return allowed


class SecurityHeaders:
    """Adds the security headers to every response that does not set them itself
    (framing and CSP rules everywhere but ``/docs`` and ``/redoc``), and:

    - ``Cache-Control: no-store`` on every answer to a request that carries credentials
      (a bearer header or the session cookie) and on every answer that sets a cookie;
    - ``Strict-Transport-Security`` when served over https (``public_https``: the public
      URL is https; else the request's scheme, which uvicorn takes from
      ``X-Forwarded-Proto`` of a trusted proxy only);
    - the deletion of an invalid session cookie (flagged in the scope as
      :data:`CLEAR_SESSION`) and of the legacy token cookie;
    - a page opened with ``?token=`` is redirected to itself without it: tokens are
      never taken from an address, which proxies and browsers keep in logs and history;
    - ``Allow`` on 405 answers lists every method the path accepts.
    """

    def __init__(self, app: ASGIApp, *, public_https: bool = False) -> None:
        self.app = app
        self.public_https = public_https
        install_log_redaction()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        if query and not path.startswith("/api/") and scope["method"] in ("GET", "HEAD"):
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(k.lower() in _TOKEN_NAMES for k, _ in pairs):
                rest = [(k, v) for k, v in pairs if k.lower() not in _TOKEN_NAMES]
                url = path + (f"?{urlencode(rest)}" if rest else "")
                response = RedirectResponse(url, status_code=303)
                await response(scope, receive, self._wrap(scope, send))
                return
        await self.app(scope, receive, self._wrap(scope, send))

    def _wrap(self, scope: Scope, send: Send) -> Send:
        extra = () if scope["path"].startswith(("/docs", "/redoc")) else PAGE_HEADERS
        https = self.public_https or scope.get("scheme") == "https"
        cookies = _cookie_names(scope)
        # as received: routing rewrites the scope's root_path on the way in (mounts)
        path, root_path = scope["path"], scope.get("root_path", "")
        credentials = SESSION_COOKIE in cookies or _has_header(scope, b"authorization")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in (*BASE_HEADERS, *extra):
                    headers.setdefault(name, value)
                if scope.get(CLEAR_SESSION):
                    headers.append("set-cookie", _deleted_cookie(SESSION_COOKIE, https))
                if LEGACY_COOKIE in cookies:
                    headers.append("set-cookie", _deleted_cookie(LEGACY_COOKIE, https))
                if credentials or "set-cookie" in headers:
                    headers["Cache-Control"] = "no-store"
                if https:
                    headers.setdefault("Strict-Transport-Security", HSTS)
                if message["status"] == 405 and (
                    methods := allowed_methods(scope.get("app"), path, root_path)
                ):
                    headers["Allow"] = ", ".join(methods)
            await send(message)

        return send_with_headers
