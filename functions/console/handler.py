"""The operations console: GET /console and GET /console/{asset}, public routes serving only the
files under static/ (the page, its script, its styles, the charting library). No data, no token,
no database, no AWS call: the page reads everything from the bearer-authenticated API, from the
browser, with the token its user gives it.

Every answer carries the Content-Security-Policy below: scripts, styles, images and API calls
from this origin only; no inline script or style, no plugin, no frame, no form target, no other
origin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STATIC = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-cache",
}
INDEX = "index.html"
NOT_FOUND = {"error": {"code": "not_found", "message": "no such console file", "details": {}}}


def _files() -> dict[str, tuple[str, str]]:
    """Every servable file, read once per container: asset name -> (content type, text). Only
    these names are ever answered; a path is never joined with what a request asks for."""
    found: dict[str, tuple[str, str]] = {}
    for path in sorted(STATIC.iterdir()):
        if path.is_file() and path.suffix in CONTENT_TYPES:
            found[path.name] = (
                CONTENT_TYPES[path.suffix],
                path.read_text(encoding="utf-8"),
            )
    return found


FILES = _files()


def _not_found() -> dict[str, Any]:
    return {
        "statusCode": 404,
        "headers": {"content-type": "application/json", **SECURITY_HEADERS},
        "body": json.dumps(NOT_FOUND),
    }


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    asset = (event.get("pathParameters") or {}).get("asset", INDEX)
    if asset not in FILES:
        return _not_found()
    content_type, text = FILES[asset]
    return {
        "statusCode": 200,
        "headers": {"content-type": content_type, **SECURITY_HEADERS},
        "body": text,
        "isBase64Encoded": False,
    }
