"""``Allow`` on the automatic ``OPTIONS`` answer lists every method of the path.

Litestar 2 builds a path's ``OPTIONS`` handler with its first route and keeps it when more
handlers of that path are merged in, so ``OPTIONS /api/v1/characters`` said ``OPTIONS, POST``
without ``GET`` (litestar#4169, fixed only in Litestar 3). The merged route still holds that
handler: a ``before_send`` hook looks it up and sends the whole route's methods instead.
"""

from __future__ import annotations

from litestar import Litestar
from litestar.datastructures import MutableScopeHeaders
from litestar.routes import HTTPRoute
from litestar.types import Message, Scope


def whole_allow(app: Litestar) -> dict[int, str]:
    """Each ``OPTIONS`` handler (by id) → the ``Allow`` value of the route it answers for."""
    found: dict[int, str] = {}
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            allow = ", ".join(sorted(route.methods))
            for handler in route.route_handlers:
                if "OPTIONS" in handler.http_methods:
                    found[id(handler)] = allow
    return found


async def fix_allow(message: Message, scope: Scope) -> None:
    """``before_send`` hook: the whole route's methods in an ``OPTIONS`` answer's ``Allow``."""
    if message["type"] != "http.response.start" or scope.get("method") != "OPTIONS":
        return
    table: dict[int, str] | None = getattr(scope["app"].state, "allow_by_handler", None)
    allow = (table or {}).get(id(scope.get("route_handler")))
    if allow:
        MutableScopeHeaders.from_message(message)["allow"] = allow
