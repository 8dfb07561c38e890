"""The web console: one static page at `/` and its assets under `/console/`, shipped in the package.

The files carry no data, so they are served without an API key (see server/auth.py); the page asks
for a key when the API answers 401. A strict Content-Security-Policy keeps the page to this origin:
nothing is fetched from anywhere else, and no inline script runs.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from server.errors import ApiError

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
# Plain names only: no directories, so no path can leave CONSOLE_DIR.
_ASSET_NAME = re.compile(r"^[a-z][a-z0-9_]*\.(js|css)$")
_MEDIA_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Small files that change with the package: always revalidated (the ETag keeps that cheap).
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["console"], include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"])
async def console_page() -> FileResponse:
    """The console's single page."""
    return FileResponse(
        CONSOLE_DIR / "index.html", media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS
    )


@router.api_route("/console/{name}", methods=["GET", "HEAD"])
async def console_asset(name: str) -> FileResponse:
    """A script or style sheet of the console; 404 naming the file for anything else."""
    path = CONSOLE_DIR / name
    if not _ASSET_NAME.fullmatch(name) or not path.is_file():
        raise ApiError(404, f"console: no asset named {name!r}", "not_found")
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix[1:]], headers=SECURITY_HEADERS)
