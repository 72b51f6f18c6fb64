"""Typed, versioned messages with validation at the edge.

Every frame on the wire (coordinator websocket text frames and peer data-channel
text messages) is one JSON object ``{"type": ..., "v": ..., **fields}``. Each
message type is a dataclass registered in a :class:`Registry`; decoding checks the
type, version, required fields, field types and size, and reports every problem as
a :class:`ProtocolError` with a stable ``code`` -- so a connection loop can answer
with a typed error and carry on instead of dying on a ``KeyError``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin, get_type_hints

PROTOCOL_VERSION = 1

#: Largest text frame accepted anywhere. Bulk bytes never travel as JSON.
MAX_FRAME_BYTES = 256 * 1024

M = TypeVar("M", bound="Message")


class ProtocolError(Exception):
    """A frame that cannot be accepted.

    ``code`` is machine-readable and stable (documented in docs/protocol.md);
    ``str(err)`` is a one-line message a person can act on.
    """

    def __init__(self, code: str, message: str, *, ref: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


@dataclasses.dataclass
class Message:
    """Base of every message. Subclasses set ``TYPE`` and declare fields."""

    TYPE: ClassVar[str] = ""
    VERSION: ClassVar[int] = PROTOCOL_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = {"type": self.TYPE, "v": self.VERSION}
        for f in dataclasses.fields(self):
            data[f.name] = _plain(getattr(self, f.name))
        return data

    def encode(self) -> str:
        """Serialize to a JSON text frame."""
        text = json.dumps(self.to_dict(), separators=(",", ":"))
        if len(text.encode()) > MAX_FRAME_BYTES:
            raise ProtocolError("oversize", f"{self.TYPE} frame is larger than {MAX_FRAME_BYTES} bytes")
        return text


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class Registry:
    """Maps ``type`` strings to message classes for one channel.

    The coordinator channel and the peer channel each have their own registry, so a
    peer message sent to the coordinator is an ``unknown_type`` error rather than a
    silently accepted frame.
    """

    def __init__(self, name: str):
        self.name = name
        self._types: dict[str, type[Message]] = {}

    def register(self, cls: type[M]) -> type[M]:
        if not cls.TYPE:
            raise TypeError(f"{cls.__name__} has no TYPE")
        if cls.TYPE in self._types:
            raise TypeError(f"duplicate message type {cls.TYPE!r} in {self.name}")
        self._types[cls.TYPE] = cls
        return cls

    def __contains__(self, type_name: str) -> bool:
        return type_name in self._types

    def types(self) -> dict[str, type[Message]]:
        return dict(self._types)

    def decode(self, raw: str | bytes) -> Message:
        """Parse and validate one frame; raise :class:`ProtocolError` on any problem."""
        size = len(raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass"))
        if size > MAX_FRAME_BYTES:
            raise ProtocolError("oversize", f"frame of {size} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProtocolError("malformed", f"frame is not valid JSON: {exc}") from None
        return self.from_dict(data)

    def from_dict(self, data: Any) -> Message:
        if not isinstance(data, dict):
            raise ProtocolError("malformed", "frame must be a JSON object")
        type_name = data.get("type")
        if not isinstance(type_name, str):
            raise ProtocolError("malformed", "frame has no string 'type' field")
        cls = self._types.get(type_name)
        if cls is None:
            raise ProtocolError("unknown_type", f"unknown {self.name} message type {type_name[:64]!r}")
        version = data.get("v", PROTOCOL_VERSION)
        if not isinstance(version, int) or isinstance(version, bool) or version > cls.VERSION or version < 1:
            raise ProtocolError(
                "bad_version",
                f"{type_name} version {version!r} is not supported (this side speaks v{cls.VERSION}); upgrade sleap-rtc-plugin",
            )
        return build(cls, data, where=type_name)


def build(cls: type[M], data: dict[str, Any], *, where: str) -> M:
    """Construct ``cls`` from ``data``, checking every field against its annotation."""
    hints = _hints(typing.cast(type, cls))
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _check(data[f.name], hints[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            raise ProtocolError("missing_field", f"{where} is missing required field {f.name!r}")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    return obj


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    """Resolved annotations of a message class; cached because resolving string
    annotations dominates decode time for large frames (e.g. a peer list)."""
    return get_type_hints(cls, include_extras=True)


_NoneType = type(None)


def _check(value: Any, hint: Any, where: str) -> Any:
    origin = get_origin(hint)
    if hint is Any:
        return value
    if origin is typing.Annotated:
        base, *checks = get_args(hint)
        value = _check(value, base, where)
        for check in checks:
            if callable(check):
                check(value, where)
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for option in get_args(hint):
            try:
                return _check(value, option, where)
            except ProtocolError as exc:
                errors.append(exc)
        raise ProtocolError("wrong_type", f"{where} has the wrong type ({type(value).__name__})")
    if origin is typing.Literal:
        if value not in get_args(hint):
            allowed = ", ".join(repr(a) for a in get_args(hint))
            raise ProtocolError("bad_value", f"{where} must be one of {allowed}, not {value!r}"[:300])
        return value
    if hint is _NoneType:
        if value is not None:
            raise ProtocolError("wrong_type", f"{where} must be null")
        return None
    if origin is list:
        if not isinstance(value, list):
            raise ProtocolError("wrong_type", f"{where} must be a list, not {type(value).__name__}")
        (item,) = get_args(hint) or (Any,)
        return [_check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ProtocolError("wrong_type", f"{where} must be an object, not {type(value).__name__}")
        key_t, val_t = get_args(hint) or (Any, Any)
        return {_check(k, key_t, f"{where} key"): _check(v, val_t, f"{where}[{k!r}]") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ProtocolError("wrong_type", f"{where} must be an object")
        return build(typing.cast(Any, hint), value, where=where)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProtocolError("wrong_type", f"{where} must be a number, not {type(value).__name__}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProtocolError("wrong_type", f"{where} must be an integer, not {type(value).__name__}")
        return value
    if hint in (str, bool):
        if not isinstance(value, hint):
            raise ProtocolError("wrong_type", f"{where} must be a {hint.__name__}, not {type(value).__name__}")
        return value
    raise TypeError(f"unsupported annotation {hint!r} at {where}")


def require(condition: bool, code: str, message: str) -> None:
    """Raise a :class:`ProtocolError` unless ``condition`` holds (for ``validate`` hooks)."""
    if not condition:
        raise ProtocolError(code, message)
