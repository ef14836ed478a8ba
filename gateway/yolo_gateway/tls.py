"""HTTPS at the gateway: the certificate and key from files (a mounted `kubernetes.io/tls`
Secret), checked at start, reloaded when they change, without a restart.

- **At start** `check` loads the pair into a throwaway SSLContext. A missing file, a file that is
  not PEM, a key that does not match the certificate: the gateway exits with one line
  `TLSInvalid: <which file, what is wrong>`, which the pod's termination message carries to the
  YoloService's GatewayReady condition. It never serves clear text in place of TLS.
- **Rotation** `Reloader` checks the files' identity (inode, size, mtime) every few seconds.
  When they change (the kubelet swaps a Secret volume's files atomically), it loads the new pair
  into the server's own SSLContext: `load_cert_chain` on a live context applies to every
  handshake after it, and connections already open keep theirs. A pair that fails to load is
  logged and the old one stays: a bad rotation never takes the gateway down.
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("yolo_gateway")


class TLSInvalid(Exception):
    """The certificate or key cannot be served; the message names the file and the fault."""


@dataclass(frozen=True, slots=True)
class TLSFiles:
    certfile: Path
    keyfile: Path

    def identity(self) -> tuple[tuple[int, int, int], ...]:
        """What changes when a file is replaced: (inode, size, mtime ns) of each, after symlinks."""
        out = []
        for f in (self.certfile, self.keyfile):
            try:
                st = f.stat()
            except OSError:
                out.append((0, 0, 0))
                continue
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(out)


def _first_pem_label(path: Path) -> str | None:
    try:
        text = path.read_bytes()[:65536].decode("ascii", "replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("-----BEGIN ") and line.endswith("-----"):
            return line[len("-----BEGIN ") : -len("-----")]
    return None


def load(context: ssl.SSLContext, files: TLSFiles) -> None:
    """Load the pair into `context`; TLSInvalid names which file is wrong and how."""
    for f, what in ((files.certfile, "certificate"), (files.keyfile, "private key")):
        if not f.is_file():
            raise TLSInvalid(f"the {what} {f.name} is missing ({f}): does the Secret exist and have that key?")
        label = _first_pem_label(f)
        if label is None:
            raise TLSInvalid(f"{f.name} is not PEM: no '-----BEGIN …-----' line ({f})")
        if what == "certificate" and label != "CERTIFICATE":
            raise TLSInvalid(f"{f.name} holds a '{label}' block, not a CERTIFICATE ({f})")
        if what == "private key" and "PRIVATE KEY" not in label:
            raise TLSInvalid(f"{f.name} holds a '{label}' block, not a PRIVATE KEY ({f})")
    try:
        context.load_cert_chain(str(files.certfile), str(files.keyfile))
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise TLSInvalid(
                f"{files.keyfile.name} is not the key of the certificate in {files.certfile.name}"
            ) from exc
        raise TLSInvalid(
            f"{files.certfile.name} / {files.keyfile.name} could not be loaded: {exc.reason or exc}"
        ) from exc


def check_ca(path: Path) -> None:
    """Raise TLSInvalid unless `path` is a PEM bundle of CA certificates (Triton's, for the client)."""
    if not path.is_file():
        raise TLSInvalid(
            f"the CA certificate {path.name} is missing ({path}): does the Secret exist and have that key?"
        )
    label = _first_pem_label(path)
    if label != "CERTIFICATE":
        raise TLSInvalid(f"{path.name} is not a PEM CERTIFICATE ({path})")
    try:
        ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as exc:
        raise TLSInvalid(f"{path.name} could not be loaded as a CA bundle: {exc.reason or exc}") from exc


def check(files: TLSFiles) -> None:
    """Raise TLSInvalid unless the pair loads (a throwaway server context)."""
    load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), files)


class Reloader:
    """Reload the pair into `context` whenever the files change; a thread, stopped by `stop`."""

    def __init__(self, context: ssl.SSLContext, files: TLSFiles, interval_s: float) -> None:
        self.context = context
        self.files = files
        self.interval_s = interval_s
        self.seen = files.identity()
        self.reloads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="yolo-tls-reload", daemon=True)

    def start(self) -> Reloader:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def poll(self) -> bool:
        """One check: True when a changed pair was loaded."""
        now = self.files.identity()
        if now == self.seen:
            return False
        try:
            check(self.files)  # never half-load a bad pair into the live context
            load(self.context, self.files)
        except TLSInvalid as exc:
            log.error("TLS certificate not reloaded, the previous one stays: %s", exc)
            self.seen = now  # say it once per change, not every interval
            return False
        self.seen = now
        self.reloads += 1
        log.warning("TLS certificate reloaded from %s", self.files.certfile)
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()


def from_env(certfile: str, keyfile: str) -> TLSFiles | None:
    """The pair the settings name; None when TLS is off (neither set)."""
    if not certfile and not keyfile:
        return None
    return TLSFiles(Path(certfile), Path(keyfile))
