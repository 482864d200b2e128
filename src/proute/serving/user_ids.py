"""A user id as the server, the chat page and ``proute infer --user`` read it.

One rule decides what a user id is and which values are one user:
:func:`proute.data.ids.user_key` (``3``, ``"3"`` and ``3.0`` are user 3; ``"007"`` is not
user 7; booleans, ``null``, lists, mappings and ``""`` are refused naming the field). These
two readers only choose the form the router gets, and answers back as ``user_id``:

>>> json_user_id(3.0), json_user_id("3"), json_user_id(" alice ")
(3, '3', 'alice')
>>> text_user_id("7"), text_user_id("007"), text_user_id("-1"), text_user_id("3.0")
(7, '007', -1, 3)
>>> text_user_id("3.5", "--user")  # doctest: +ELLIPSIS
Traceback (most recent call last):
proute.data.ids.UserIdError: field '--user': expected a user id (...), got the number 3.5, which is not...
>>> json_user_id([1], "user")  # doctest: +ELLIPSIS
Traceback (most recent call last):
proute.data.ids.UserIdError: field 'user': expected a user id (...), got a list
"""

from __future__ import annotations

import numbers
import re
from typing import Any

from proute.data.ids import UserIdError, user_key

#: A typed decimal number: ``"3.0"`` is the number 3 as JSON's ``3.0`` is (the integer part
#: written as ``str(int)`` writes it: ``"007.0"`` stays a text, as ``"007"`` does).
_DECIMAL = re.compile(r"(-?(?:0|[1-9][0-9]*))\.([0-9]+)")


def json_user_id(value: Any, field: str = "user_id") -> int | str:
    """A user id from JSON: a number as an ``int`` (``3.0`` is 3), a text as its key (the
    text stripped), so that a client gets back the type it sent."""
    key = user_key(value, field)
    return int(key) if isinstance(value, numbers.Real) else key


def text_user_id(text: Any, field: str = "user_id") -> int | str:
    """A user id typed as text (the ``--user`` option, the chat page's box): an ``int`` when
    its key is an integer as ``str(int)`` writes it (``"7"``, ``"-1"``) or such an integer
    with a zero fraction (``"3.0"``, as JSON's ``3.0``), else the key. A decimal with a
    fraction (``"3.5"``) is a :class:`~proute.data.ids.UserIdError`, as the number 3.5 is."""
    key = user_key(text, field)
    decimal = _DECIMAL.fullmatch(key)
    if decimal is not None:
        if decimal.group(2).strip("0"):
            raise UserIdError(field, f"the number {key}, which is not an integer")
        return int(decimal.group(1))
    try:
        return int(key) if str(int(key)) == key else key
    except ValueError:
        return key
