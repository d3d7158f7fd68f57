"""Powertools' event handler keeps the event being resolved on a class: `BaseRouter.current_event`
and `BaseRouter.lambda_context`, one slot per process. Lambda runs one invocation per process,
so that is safe there. The local stack runs every function container as a thread of one process,
so two requests resolved at once could read each other's event: a route or body or signature
that is not theirs (a 404 to a valid POST, a 409 to a free slot, a 401 to a signed webhook, seen
under `make load`). install() makes those two slots per thread, for the local stack only.
"""

from __future__ import annotations

import threading
from abc import ABCMeta
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import BaseRouter

_FIELDS = ("current_event", "lambda_context")
_local = threading.local()


class _PerThread:
    """The value on a resolver instance (`self.current_event`): this thread's."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        return getattr(_local, self._name, None)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(_local, self._name, value)


def _class_level(name: str) -> property:
    """The value on the class (`BaseRouter.current_event = ...`, as Powertools writes it): this thread's."""
    return property(
        lambda cls: getattr(_local, name, None),
        lambda cls, value: setattr(_local, name, value),
    )


class _PerThreadRouterMeta(ABCMeta):
    current_event = _class_level("current_event")
    lambda_context = _class_level("lambda_context")


def install() -> None:
    """Idempotent. Instance access goes through a data descriptor on BaseRouter, class access through
    a property on its metaclass; both read and write the calling thread's slot."""
    if type(BaseRouter) is _PerThreadRouterMeta:
        return
    for name in _FIELDS:
        current = BaseRouter.__dict__.get(name)
        if current is not None and not isinstance(current, _PerThread):
            setattr(_local, name, current)  # a value set before install: the installing thread's
        type.__setattr__(BaseRouter, name, _PerThread(name))
    router: Any = BaseRouter
    router.__class__ = _PerThreadRouterMeta
