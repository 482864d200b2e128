"""A user id as the server, the chat page and ``proute infer --user`` read it.

One rule decides what a user id is and which values are one user:
:func:`proute.data.ids.user_key` (``3``, ``"3"`` and ``3.0`` are user 3; ``"007"`` is not
user 7; booleans, ``null``, lists, mappings and ``""`` are refused naming the field). These
two readers only choose the form the router gets, and answers back as ``user_id``:

>>> json_user_id(3.0), json_user_id("3"), json_user_id(" alice ")
(3, '3', 'alice')
>>> text_user_id("7"), text_user_id("007"), text_user_id("-1")
(7, '007', -1)
>>> json_user_id([1], "user")  # doctest: +ELLIPSIS
Traceback (most recent call last):
proute.data.ids.UserIdError: field 'user': expected a user id (...), got a list
"""

from __future__ import annotations

import numbers
from typing import Any

from proute.data.ids import user_key


def json_user_id(value: Any, field: str = "user_id") -> int | str:
    """A user id from JSON: a number as an ``int`` (``3.0`` is 3), a text as its key (the
    text stripped), so that a client gets back the type it sent."""
    key = user_key(value, field)
    return int(key) if isinstance(value, numbers.Real) else key


def text_user_id(text: Any, field: str = "user_id") -> int | str:
    """A user id typed as text (the ``--user`` option, the chat page's box): an ``int`` when
    its key is an integer as ``str(int)`` writes it (``"7"``, ``"-1"``), else the key."""
    key = user_key(text, field)
    try:
        return int(key) if str(int(key)) == key else key
    except ValueError:
        return key
