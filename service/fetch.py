"""Safe recording download: http(s) only, no private addresses, streamed, capped, sniffed."""
from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urljoin, urlsplit

import requests

from integrations.base import PermanentError, TransientError, retry_after

MAX_REDIRECTS = 5
_AUDIO_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"ID3", 0, "audio/mpeg"), (b"RIFF", 0, "audio/wav"), (b"OggS", 0, "audio/ogg"), (b"fLaC", 0, "audio/flac"),
    (b"ftyp", 4, "audio/mp4"), (b"\x1a\x45\xdf\xa3", 0, "audio/webm"), (b"#!AMR", 0, "audio/amr"),
)


@dataclass(frozen=True)
class Downloaded:
    """A recording on local disk."""

    path: Path
    sha256: str
    size_bytes: int
    mime: str


def sniff_audio(head: bytes) -> str | None:
    """The audio MIME type from the first bytes, or None when it is not audio we know."""
    for magic, offset, mime in _AUDIO_MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return mime
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:  # MPEG/AAC frame sync
        return "audio/aac" if (head[1] & 0x06) == 0 else "audio/mpeg"
    return None


def _describe_non_audio(head: bytes) -> str:
    text = head.lstrip()[:1]
    if text == b"<":
        return "the server returned an HTML/XML page instead of audio"
    if text in (b"{", b"["):
        return "the server returned JSON instead of audio"
    return "the file is not a known audio format"


def check_host(url: str, allow_hosts: Iterable[str]) -> None:
    """Refuse non-http(s) URLs and hosts resolving to loopback, private, link-local or reserved addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PermanentError("recording URL must be http(s)")
    host = parts.hostname.lower()
    allowed = {h.lower() for h in allow_hosts}
    if host in allowed or "*" in allowed:
        return
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80), proto=socket.IPPROTO_TCP)
    except socket.gaierror as err:
        raise TransientError(f"cannot resolve recording host: {err.strerror}") from err
    for info in infos:
        addr = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if (addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_reserved
                or addr.is_multicast or addr.is_unspecified):
            raise PermanentError("recording host resolves to a private or local address (not in allow_hosts)")


def download(session: requests.Session, url: str, dest_dir: Path, *, allow_hosts: Iterable[str] = (),
             max_bytes: int = 200 * 1024 * 1024, request_kwargs: dict[str, Any] | None = None) -> Downloaded:
    """Stream a recording to dest_dir; TransientError for 404/408/429/5xx and timeouts, PermanentError otherwise."""
    allow = list(allow_hosts)
    kwargs = dict(request_kwargs or {})
    for _ in range(MAX_REDIRECTS + 1):
        check_host(url, allow)
        try:
            resp = session.get(url, stream=True, allow_redirects=False, **kwargs)
        except (requests.Timeout, requests.ConnectionError) as err:
            raise TransientError(f"recording download: {type(err).__name__}") from err
        except requests.RequestException as err:
            raise PermanentError(f"recording download: {type(err).__name__}") from err
        if resp.is_redirect and resp.headers.get("Location"):
            target = urljoin(url, resp.headers["Location"])
            if urlsplit(target).netloc != urlsplit(url).netloc:
                kwargs = _without_credentials(kwargs)  # never hand a provider's credentials to another host
            url = target
            resp.close()
            continue
        with resp:
            return _save(resp, dest_dir, max_bytes)
    raise PermanentError("recording download: too many redirects")


def _without_credentials(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in kwargs.items() if k not in ("auth", "params", "cookies")}
    headers = {k: v for k, v in (kwargs.get("headers") or {}).items()
               if k.lower() not in ("authorization", "api-key", "x-api-key", "cookie")}
    if headers:
        out["headers"] = headers
    return out


def _save(resp: requests.Response, dest_dir: Path, max_bytes: int) -> Downloaded:
    status = resp.status_code
    if status in (404, 408, 409, 425, 429) or status >= 500:
        raise TransientError(f"recording not available yet: HTTP {status}", retry_after(resp))
    if status >= 400:
        raise PermanentError(f"recording download refused: HTTP {status}")
    length = resp.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise PermanentError(f"recording is larger than the {max_bytes // (1024 * 1024)} MiB limit")
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest_dir / f".download-{os.getpid()}-{id(resp)}"
    digest, size, head = hashlib.sha256(), 0, b""
    try:
        with open(tmp, "wb") as out:
            for chunk in resp.iter_content(64 * 1024):
                if not chunk:
                    continue
                if len(head) < 64:
                    head += chunk[:64 - len(head)]
                size += len(chunk)
                if size > max_bytes:
                    raise PermanentError(f"recording is larger than the {max_bytes // (1024 * 1024)} MiB limit")
                digest.update(chunk)
                out.write(chunk)
    except (requests.RequestException, OSError) as err:
        tmp.unlink(missing_ok=True)
        raise TransientError(f"recording download interrupted: {type(err).__name__}") from err
    except PermanentError:
        tmp.unlink(missing_ok=True)
        raise
    if size == 0:
        tmp.unlink(missing_ok=True)
        raise TransientError("recording download returned an empty body")
    mime = sniff_audio(head)
    if mime is None:
        tmp.unlink(missing_ok=True)
        raise TransientError(f"recording not usable: {_describe_non_audio(head)}")
    sha = digest.hexdigest()
    final = dest_dir / f"{sha[:32]}{_suffix(mime)}"
    os.replace(tmp, final)
    return Downloaded(final, sha, size, mime)


def _suffix(mime: str) -> str:
    return {"audio/mpeg": ".mp3", "audio/wav": ".wav", "audio/ogg": ".ogg", "audio/flac": ".flac",
            "audio/mp4": ".m4a", "audio/webm": ".webm", "audio/amr": ".amr", "audio/aac": ".aac"}.get(mime, ".bin")
