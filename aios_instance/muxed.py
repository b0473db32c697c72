"""`MuxedData`: a Muxer's merged ``data``, the JSON text of ``{"inputs": [...]}`` that also
reads as that dict, so blocks written either way (``json.loads(packet.data)`` or
``packet.data["inputs"]``) work unchanged."""

from __future__ import annotations

import copy
from collections.abc import ItemsView, KeysView, Mapping, ValuesView
from typing import Any, SupportsIndex

from . import _json

__all__ = ["MuxedData"]


class MuxedData(str):
    """A merged packet's ``data``: the JSON text of a dict that also reads as that dict.

    It is a ``str`` — so ``json.loads(packet.data)``, ``isinstance(data, str)`` and
    serialization see the JSON text — whose mapping operations answer from the dict:
    ``"inputs" in data``, ``data["inputs"]``, ``data.get``/``keys``/``values``/``items``, and
    ``data == {"inputs": [...]}``. Indexing with an int or a slice, ``len`` and iteration are
    those of the text (``json`` needs them). ``isinstance(data, dict)`` is False: one value
    cannot be both a str that ``json.loads`` accepts and a dict. ``copy()`` gives a shallow
    dict, ``to_dict()`` an independent deep copy.

    Treat it as read-only, like any str: the text is fixed when it is made, so changing the
    lists it returns in place does not change the text (nor what goes on the wire). To change
    a packet's data, assign ``packet.data``.
    """

    _value: dict[str, Any]

    def __new__(cls, value: Mapping[str, Any]) -> MuxedData:
        mapping = dict(value)
        return cls._make(_json.dumps(mapping), mapping)

    @classmethod
    def _make(cls, text: str, mapping: dict[str, Any]) -> MuxedData:
        self = str.__new__(cls, text)
        self._value = mapping
        return self

    # -- the mapping ----------------------------------------------------------------------
    def __getitem__(self, key: str | SupportsIndex | slice) -> Any:
        if isinstance(key, str):
            return self._value[key]
        return str.__getitem__(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self._value

    def get(self, key: str, default: Any = None) -> Any:
        """``dict.get`` on the mapping."""
        return self._value.get(key, default)

    def keys(self) -> KeysView[str]:
        """The mapping's keys."""
        return self._value.keys()

    def values(self) -> ValuesView[Any]:
        """The mapping's values."""
        return self._value.values()

    def items(self) -> ItemsView[str, Any]:
        """The mapping's items."""
        return self._value.items()

    def copy(self) -> dict[str, Any]:
        """A shallow copy of the mapping, as a real dict."""
        return dict(self._value)

    def to_dict(self) -> dict[str, Any]:
        """An independent (deep) copy of the mapping, as a real dict."""
        return copy.deepcopy(self._value)

    # -- equality, copies, pickling ---------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._value == other
        return str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = str.__hash__

    def __copy__(self) -> MuxedData:
        return self  # immutable, like any str

    def __deepcopy__(self, memo: dict[int, Any]) -> MuxedData:
        return MuxedData._make(str(self), copy.deepcopy(self._value, memo))

    def __reduce__(self) -> tuple[Any, ...]:
        return (MuxedData, (self._value,))

    def __repr__(self) -> str:
        return f"MuxedData({self._value!r})"
