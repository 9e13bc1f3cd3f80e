"""HTTP mapping of the error family, and the one JSON shape every error answer has.

{"error": {"code": "schema_invalid", "message": "...", "errors": [{"line", "path", "reason"}]},
 "request_id": "..."}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web

from hub.domain.bericht import Fout
from hub.domain.errors import ErrorCode

STATUS: dict[ErrorCode, int] = {
    ErrorCode.NOT_WELL_FORMED: 400,
    ErrorCode.HOSTILE_XML: 400,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.REQUEST_TIMEOUT: 408,
    ErrorCode.UNKNOWN_MESSAGE: 422,
    ErrorCode.RELEASE_NOT_ACCEPTED: 422,
    ErrorCode.HEADER_MISMATCH: 422,
    ErrorCode.SCHEMA_INVALID: 422,
    ErrorCode.UNKNOWN_RECEIVER: 422,
    ErrorCode.ROUTE_NOT_ALLOWED: 422,
    ErrorCode.UNKNOWN_CONVERSATION: 422,
    ErrorCode.IDENTIFICATIE_REUSED: 409,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.AFZENDER_MISMATCH: 403,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.RATE_LIMITED: 429,
}

RETRY_AFTER_SECONDS = 5


def error_response(
    code: ErrorCode,
    message: str,
    request_id: str,
    errors: Iterable[Fout] = (),
    *,
    status: int | None = None,
    retry_after: int | None = None,
) -> web.Response:
    body: dict[str, Any] = {
        "error": {
            "code": code.value,
            "message": message,
            "errors": [{"line": f.line, "path": f.path, "reason": f.reason} for f in errors],
        },
        "request_id": request_id,
    }
    headers = {"X-Request-Id": request_id}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    elif code in (ErrorCode.UNAVAILABLE, ErrorCode.RATE_LIMITED):
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    if code is ErrorCode.UNAUTHENTICATED:
        headers["WWW-Authenticate"] = 'Bearer realm="hub"'
    return web.json_response(body, status=status or STATUS[code], headers=headers)
