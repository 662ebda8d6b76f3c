"""The API's own documentation: an index at ``/``, and Swagger UI at ``/docs``.

Swagger UI's files come from an installed package (``fastapi-offline`` ships them), so
nothing is fetched from another host at run time. The page has no inline script: its
Content-Security-Policy allows scripts, styles and requests to this service only.
"""

from __future__ import annotations

from html import escape
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, Field

DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; frame-ancestors 'self'; form-action 'self'; "
    "base-uri 'none'; object-src 'none'"
)
_OWN = Path(__file__).parent / "static"
# Only these files, by name: the path never reaches the file system as given.
_FILES = {
    "swagger-ui-bundle.js": ("vendor", "text/javascript"),
    "swagger-ui.css": ("vendor", "text/css"),
    "favicon.png": ("vendor", "image/png"),
    "docs.js": ("own", "text/javascript"),
}
_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Postroom API</title>
<link rel="icon" type="image/png" href="{root}/docs/favicon.png">
<link rel="stylesheet" href="{root}/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{root}/docs/swagger-ui-bundle.js"></script>
<script src="{root}/docs/docs.js" data-openapi="{root}/openapi.json"></script>
</body>
</html>
"""


class ApiIndex(BaseModel):
    """Where the API's documentation and OpenAPI document are."""

    name: str = Field(examples=["Postroom API"])
    version: str = Field(examples=["1"])
    docs: str = Field(description="Interactive documentation", examples=["/api/v1/docs"])
    openapi: str = Field(description="The OpenAPI document", examples=["/api/v1/openapi.json"])
    health: str = Field(description="The public health check", examples=["/api/v1/healthz"])
    authentication: str


def _vendor_dir() -> Path:
    return Path(str(files("fastapi_offline") / "static"))


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def router() -> APIRouter:
    api = APIRouter(tags=["documentation"])

    @api.get("/", summary="Where the documentation is (public)")
    def index(request: Request) -> ApiIndex:
        root = _root(request)
        return ApiIndex(
            name="Postroom API",
            version="1",
            docs=f"{root}/docs",
            openapi=f"{root}/openapi.json",
            health=f"{root}/healthz",
            authentication=(
                "Authorization: Bearer <token> (postroom tokens create NAME --scope send)"
            ),
        )

    @api.get("/docs", include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        page = _PAGE.format(root=escape(_root(request), quote=True))
        return HTMLResponse(page, headers=_headers())

    @api.get("/docs/{name}", include_in_schema=False)
    def docs_file(name: str) -> FileResponse:
        found = _FILES.get(name)
        if found is None:
            raise HTTPException(404, "no such file")
        where, media_type = found
        folder = _vendor_dir() if where == "vendor" else _OWN
        return FileResponse(folder / name, media_type=media_type, headers=_headers())

    return api


def _headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": DOCS_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-cache",
    }
