"""A notification's target, stored as JSON, compiled to a SQL predicate over `installations i`.

Kept apart from dispatch so tag expressions (compiled to SQL over the tags GIN index) replace
`predicate` without touching the dispatch loop.
"""

from __future__ import annotations

from typing import Any


def predicate(target: dict[str, Any], first_param: int) -> tuple[str, list[Any]]:
    """SQL condition and its parameters, numbered from `$first_param`."""
    p = f"${first_param}"
    if "installationId" in target:
        return f"i.installation_id = {p}", [target["installationId"]]
    if "tag" in target:
        return f"i.tags @> ARRAY[{p}::text]", [target["tag"]]
    if "userId" in target:
        return f"i.user_id = {p}", [target["userId"]]
    if target.get("everyone"):
        return "true", []
    raise ValueError(f"unknown target {sorted(target)}")
