"""TLS for the coordinator's websocket: the server's context and what clients trust.

Room and admin tokens travel in the first frames of every connection, so a coordinator
reachable over a network needs ``wss://`` -- either its own certificate
(``sleap-rtc server --tls-cert/--tls-key``) or a TLS reverse proxy in front
(docs/lab-it.md). Clients trust the system's CAs by default; ``tls_ca``
(``--tls-ca PEM``, ``SLEAP_RTC_TLS_CA``) names a private CA or a self-signed
certificate to trust instead.
"""

from __future__ import annotations

import os
import ssl

#: Environment variable naming a PEM file of CA certificates clients trust for ``wss://``.
TLS_CA_ENV = "SLEAP_RTC_TLS_CA"

_default_ca: str | None = None


class TLSConfigError(ValueError):
    """A certificate, key or CA file that cannot be used; one line naming it."""


def server_context(cert: str | os.PathLike[str], key: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """A server context (TLS 1.2+) from a PEM certificate chain and its private key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(os.fspath(cert), os.fspath(key) if key else None)
    except FileNotFoundError as exc:
        raise TLSConfigError(f"TLS certificate or key file not found: {exc.filename}") from None
    except (ssl.SSLError, OSError) as exc:
        raise TLSConfigError(f"cannot load TLS certificate {cert} / key {key}: {exc}; give a PEM certificate (chain) and its unencrypted PEM key") from None
    return context


def set_default_ca(path: str | os.PathLike[str] | None) -> None:
    """Trust ``path`` for every later ``wss://`` connection of this process (the CLI
    sets it from the ``tls_ca`` setting); ``None`` falls back to ``SLEAP_RTC_TLS_CA``."""
    global _default_ca
    _default_ca = os.fspath(path) if path else None


def client_context(url: str, ca: str | os.PathLike[str] | None = None) -> ssl.SSLContext | None:
    """The context for connecting to ``url``: ``None`` for ``ws://``; for ``wss://`` the
    system trust store, or only the CAs in ``ca`` (else the process default, else
    ``$SLEAP_RTC_TLS_CA``). Hostnames are always checked."""
    if not url.lower().startswith("wss://"):
        return None
    cafile = os.fspath(ca) if ca else (_default_ca or os.environ.get(TLS_CA_ENV) or _configured_ca())
    try:
        return ssl.create_default_context(cafile=cafile)
    except FileNotFoundError:
        raise TLSConfigError(f"TLS CA file {cafile} not found (--tls-ca / {TLS_CA_ENV})") from None
    except (ssl.SSLError, OSError) as exc:
        raise TLSConfigError(f"TLS CA file {cafile} is not usable PEM ({exc}) (--tls-ca / {TLS_CA_ENV})") from None


def _configured_ca() -> str | None:
    """``tls_ca`` from the config file, for callers that never ran the CLI (the GUI)."""
    from ..config import ConfigError, load_settings

    try:
        return load_settings().get("tls_ca")
    except ConfigError:
        return None


def describe_failure(url: str, exc: BaseException) -> str:
    """One actionable line for a failed connection attempt, naming the TLS cause if any."""
    secure = url.lower().startswith("wss://")
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or str(exc)
        return (f"cannot verify the TLS certificate of the coordinator at {url} ({why}); "
                f"to trust a private CA or self-signed certificate pass --tls-ca PEM or set {TLS_CA_ENV}")
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {url} failed ({exc.reason or exc}); is the coordinator serving plain ws:// on that port? then use ws://"
    if isinstance(exc, TLSConfigError):
        return str(exc)
    hint = "" if secure else "; if the coordinator uses TLS, connect with wss://"
    return f"cannot reach the coordinator at {url}: {exc}{hint}"
