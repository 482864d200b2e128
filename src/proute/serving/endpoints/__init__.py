"""The endpoints of ``proute serve``, one module per concern, each an ``APIRouter``:
:mod:`.health` (``/health``, ``/v1/models``), :mod:`.route` (``/v1/route``),
:mod:`.completions` (``/v1/chat/completions``), :mod:`.users` (``/v1/feedback``,
``/v1/users``). They reach the :class:`~proute.serving.service.Service` with the dependency
:data:`ServiceDep`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from proute.serving.service import Service


def service(request: Request) -> Service:
    """The app's :class:`Service`."""
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(service)]
