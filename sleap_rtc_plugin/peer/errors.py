"""Typed failures of the peer link. Every ``str(err)`` is one actionable line."""

from __future__ import annotations


class PeerLinkError(Exception):
    """Base of every peer-link failure."""


class ConnectError(PeerLinkError):
    """Setting up the peer connection failed at ``stage`` (``answer``, ``ice``, ``channel``)."""

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


class NoAnswerError(ConnectError):
    def __init__(self, message: str):
        super().__init__("answer", message)


class IceFailedError(ConnectError):
    def __init__(self, message: str):
        super().__init__("ice", message)


class ChannelTimeoutError(ConnectError):
    def __init__(self, message: str):
        super().__init__("channel", message)


class AuthError(PeerLinkError):
    """Mutual room-secret authentication failed (wrong/missing secret, or a relay in the middle)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class LinkClosedError(PeerLinkError):
    """The link closed while an operation was waiting on it."""


class TransferError(PeerLinkError):
    """A file transfer failed; ``code`` matches ``file_reject.code``."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
