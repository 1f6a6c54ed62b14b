"""Fetching dataset files: checksum-verified, atomic, cached.

A download goes to a hidden temporary file beside the destination, is hashed while it
streams, and is renamed into place (``os.replace``) only when every byte arrived and the
SHA-256 matches. A wrong checksum, a short transfer or Ctrl-C therefore leave no file behind,
and a file that exists under its final name is always complete.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

__all__ = ["DownloadError", "default_root", "download_file", "sha256_of"]

_CHUNK = 1 << 16


class DownloadError(OSError):
    """A download failed (network error, short transfer or checksum mismatch); nothing was kept."""


def default_root() -> Path:
    """Where datasets live: ``$MINIDL_DATA`` if set, else ``~/.minidl/datasets``."""
    env = os.environ.get("MINIDL_DATA", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".minidl" / "datasets"


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_file(url: str, dest: str | os.PathLike, sha256: str | None,
                  timeout: float = 30.0) -> Path:
    """Fetch ``url`` to ``dest`` atomically, verifying its SHA-256 (hex) when given.

    Returns ``dest`` as a Path. Raises DownloadError, with no file left at ``dest`` nor any
    temporary file beside it, when the server cannot be reached, the transfer ends early
    (fewer bytes than its Content-Length) or the checksum differs.
    """
    import http.client  # noqa: PLC0415 - urllib.request pulls in ssl; keep import minidl cheap
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        h = hashlib.sha256()
        received = 0
        with os.fdopen(fd, "wb") as out:
            try:
                req = urllib.request.Request(url, headers={"User-Agent": "minidl"})
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    length = resp.headers.get("Content-Length")
                    expected = int(length) if length is not None and length.isdigit() else None
                    while True:
                        chunk = resp.read(_CHUNK)
                        if not chunk:
                            break
                        h.update(chunk)
                        out.write(chunk)
                        received += len(chunk)
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
                # URLError: refused connection, DNS failure, HTTP error status;
                # HTTPException: a malformed or cut response; OSError: timeouts, resets.
                reason = getattr(e, "reason", None) or e
                raise DownloadError(f"could not download {url}: {reason}") from e
            # http.client's read(n) returns b'' when the server closes early instead of
            # raising, so compare with the announced length ourselves.
            if expected is not None and received != expected:
                raise DownloadError(f"transfer of {url} was interrupted: received {received} "
                                    f"of {expected} bytes; nothing was kept")
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if sha256 is not None and digest != sha256.lower():
            raise DownloadError(f"SHA-256 mismatch for {url}: expected {sha256.lower()}, got "
                                f"{digest} ({received} bytes); the file was not kept")
        os.replace(tmp_name, dest)
    except BaseException:
        # Also on KeyboardInterrupt: never leave a partial file behind.
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return dest
