"""Domain errors that carry an HTTP status and a stable code, rendered as problem+json by one
middleware (RFC 9457). Handlers raise; nothing else builds error responses.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError

log = structlog.get_logger("tocsin.http")

PROBLEM_CONTENT_TYPE = "application/problem+json"
M = TypeVar("M", bound=BaseModel)


class Problem(Exception):
    """An error the client can act on. `field` names the offending input, where there is one."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        status: int | None = None,
        code: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.errors = errors
        self.headers = headers or {}
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code

    def body(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": f"urn:tocsin:problem:{self.code}",
            "title": self.code.replace("_", " "),
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
        }
        if self.field is not None:
            doc["field"] = self.field
        if self.errors:
            doc["errors"] = self.errors
        return doc


class Unauthorized(Problem):
    status = 401
    code = "unauthorized"


class Forbidden(Problem):
    status = 403
    code = "forbidden"


class NotFound(Problem):
    status = 404
    code = "not_found"


class Conflict(Problem):
    status = 409
    code = "conflict"


def problem_response(problem: Problem) -> web.Response:
    return web.Response(
        status=problem.status,
        text=json.dumps(problem.body()),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=problem.headers,
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as problem:
        return problem_response(problem)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        return problem_response(Problem(exc.reason, status=exc.status, code=code))


def _field_of(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def validation_problem(exc: ValidationError) -> Problem:
    errors = [
        {"field": _field_of(err["loc"]), "message": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]
    first = errors[0]
    return Problem(f"{first['field']}: {first['message']}", field=first["field"], errors=errors,
                   code="invalid_field")


def _nul_at(value: Any, path: str) -> str | None:
    """The path of the first string (or key) holding a NUL character: no store accepts one."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if "\x00" in key:
                return child
            if (found := _nul_at(item, child)) is not None:
                return found
    if isinstance(value, list):
        for n, item in enumerate(value):
            if (found := _nul_at(item, f"{path}.{n}" if path else str(n))) is not None:
                return found
    return None


async def read_model(request: web.Request, model: type[M]) -> M:
    """Parse the JSON body into `model`, turning every way it can be wrong into a 400."""
    if request.content_type not in ("application/json", "application/octet-stream", ""):
        raise Problem("body must be application/json", field="Content-Type", status=415,
                      code="unsupported_media_type")
    raw = await request.read()
    try:
        data = json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Problem(f"body is not valid JSON: {exc.__class__.__name__}", field="body",
                      code="invalid_json") from exc
    if not isinstance(data, dict):
        raise Problem("body must be a JSON object", field="body", code="invalid_json")
    if (where := _nul_at(data, "")) is not None:
        raise Problem("text must not contain NUL characters", field=where or "body",
                      code="invalid_field")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_problem(exc) from exc
