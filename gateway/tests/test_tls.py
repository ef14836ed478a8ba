"""The gateway's HTTPS files (tls.py): what is refused at start, with which message, and the
reload of a rotated pair into the live context, a bad rotation leaving the old pair serving."""

from __future__ import annotations

import contextlib
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from yolo_gateway import tls


def write_pair(folder: Path, cert: trustme.LeafCert) -> tls.TLSFiles:
    """Write the pair as a Secret volume would, swapping a new folder in, and return its paths."""
    folder.mkdir(parents=True, exist_ok=True)
    cert.cert_chain_pems[0].write_to_path(str(folder / "tls.crt.new"))
    cert.private_key_pem.write_to_path(str(folder / "tls.key.new"))
    os.replace(folder / "tls.crt.new", folder / "tls.crt")
    os.replace(folder / "tls.key.new", folder / "tls.key")
    return tls.TLSFiles(folder / "tls.crt", folder / "tls.key")


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def test_a_valid_pair_loads(ca: trustme.CA, tmp_path: Path) -> None:
    tls.check(write_pair(tmp_path, ca.issue_cert("yolo.example")))


def test_a_missing_key_is_named(ca: trustme.CA, tmp_path: Path) -> None:
    files = write_pair(tmp_path, ca.issue_cert("yolo.example"))
    files.keyfile.unlink()
    with pytest.raises(tls.TLSInvalid, match=r"the private key tls.key is missing .*does the Secret exist"):
        tls.check(files)


def test_a_file_that_is_not_pem_is_named(ca: trustme.CA, tmp_path: Path) -> None:
    files = write_pair(tmp_path, ca.issue_cert("yolo.example"))
    files.certfile.write_bytes(b"\x30\x82\x01\x0a not PEM at all")
    with pytest.raises(tls.TLSInvalid, match=r"tls.crt is not PEM"):
        tls.check(files)


def test_swapped_files_are_named(ca: trustme.CA, tmp_path: Path) -> None:
    files = write_pair(tmp_path, ca.issue_cert("yolo.example"))
    with pytest.raises(tls.TLSInvalid, match=r"tls.key holds a '.*PRIVATE KEY' block, not a CERTIFICATE"):
        tls.check(tls.TLSFiles(files.keyfile, files.certfile))


def test_a_key_of_another_certificate_is_refused(ca: trustme.CA, tmp_path: Path) -> None:
    files = write_pair(tmp_path, ca.issue_cert("yolo.example"))
    other = write_pair(tmp_path / "other", ca.issue_cert("other.example"))
    with pytest.raises(tls.TLSInvalid, match=r"tls.key is not the key of the certificate in tls.crt"):
        tls.check(tls.TLSFiles(files.certfile, other.keyfile))


def test_only_one_of_the_two_files_is_a_settings_error() -> None:
    from pydantic import ValidationError  # noqa: PLC0415

    from yolo_gateway.settings import Settings  # noqa: PLC0415

    with pytest.raises(ValidationError, match="come together"):
        Settings(tls_certfile="/x/tls.crt")
    assert tls.from_env("", "") is None


def test_the_gateway_refuses_to_start_on_a_bad_pair_with_one_line(ca: trustme.CA, tmp_path: Path) -> None:
    files = write_pair(tmp_path, ca.issue_cert("yolo.example"))
    files.keyfile.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    env = {
        **os.environ,
        "YOLO_GATEWAY_TLS_CERTFILE": str(files.certfile),
        "YOLO_GATEWAY_TLS_KEYFILE": str(files.keyfile),
        "YOLO_GATEWAY_PORT": "1",  # never reached
    }
    r = subprocess.run([sys.executable, "-m", "yolo_gateway"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert (
        r.stderr.strip().splitlines()[-1]
        == "TLSInvalid: tls.key holds a 'CERTIFICATE' block, not a PRIVATE KEY (" + str(files.keyfile) + ")"
    )


def served_subject(context: ssl.SSLContext, ca: trustme.CA) -> str:
    """The subject alternative name a client sees in a handshake with `context` (in memory)."""
    client = ssl.create_default_context()
    ca.configure_trust(client)
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    cli = client.wrap_bio(c_in, c_out, server_hostname="yolo.example")
    srv = context.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (cli, srv):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    cert = cli.getpeercert()
    assert cert is not None
    return ",".join(v for k, v in cert["subjectAltName"] if k == "DNS")


def test_a_rotated_pair_is_loaded_into_the_live_context_and_a_bad_one_is_not(ca: trustme.CA, tmp_path: Path) -> None:
    files = write_pair(tmp_path, ca.issue_cert("yolo.example", "first.yolo.example"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load(context, files)
    reloader = tls.Reloader(context, files, interval_s=3600)
    assert reloader.poll() is False  # nothing changed
    assert "first.yolo.example" in served_subject(context, ca)

    write_pair(tmp_path, ca.issue_cert("yolo.example", "second.yolo.example"))
    assert reloader.poll() is True and reloader.reloads == 1
    assert "second.yolo.example" in served_subject(context, ca)

    files.keyfile.write_text("garbage")  # a broken rotation
    assert reloader.poll() is False and reloader.reloads == 1
    assert "second.yolo.example" in served_subject(context, ca)  # the previous pair still serves
