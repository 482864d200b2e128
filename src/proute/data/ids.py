"""What a user id is: one rule for the data layer, the router, the CLI, the server and the chat.

A user id is a non-empty text of at most :data:`MAX_USER_ID_LENGTH` characters, or an
integer; its *key* (how every part of proute looks a user up) is its text. An integer and
its decimal text are one user; so is an integral float (JSON clients send ``3.0`` for 3).
Leading zeros are kept: ``"007"`` is not user 7. Booleans, ``None``, lists, mappings,
non-integral or non-finite numbers are refused with an error that names the field.

>>> user_key(3), user_key("3"), user_key(3.0), user_key(" 007 ")
('3', '3', '3', '007')
>>> user_key(True)  # doctest: +ELLIPSIS
Traceback (most recent call last):
proute.data.ids.UserIdError: field 'user_id': expected a user id (...), got a bool
"""

from __future__ import annotations

import math
import numbers
from typing import Any

MAX_USER_ID_LENGTH = 256


class UserIdError(ValueError):
    """A value that is not a user id; the message names the field and what was expected."""

    def __init__(self, field: str, got: str):
        self.field = field
        super().__init__(
            f"field {field!r}: expected a user id (a non-empty text of at most "
            f"{MAX_USER_ID_LENGTH} characters, or an integer), got {got}"
        )


def user_key(value: Any, field: str = "user_id") -> str:
    """The key of the user id ``value`` (see the module docstring); :class:`UserIdError` if
    ``value`` is not a user id. ``field`` names where the value came from, for the error."""
    if isinstance(value, bool) or value is None:
        raise UserIdError(field, "null" if value is None else "a bool")
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        x = float(value)
        if math.isfinite(x) and x.is_integer():
            return str(int(x))
        raise UserIdError(field, f"the number {x!r}, which is not an integer")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise UserIdError(field, "an empty text")
        if len(text) > MAX_USER_ID_LENGTH:
            raise UserIdError(field, f"a text of {len(text)} characters")
        return text
    raise UserIdError(field, f"a {type(value).__name__}")


def is_user_id(value: Any) -> bool:
    """Whether ``value`` is a user id (:func:`user_key` would accept it)."""
    try:
        user_key(value)
    except UserIdError:
        return False
    return True
