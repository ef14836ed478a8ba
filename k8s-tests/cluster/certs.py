"""The local cluster's certificates (openssl): one CA, then client and server certificates
signed by it, and kubeconfigs that use them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .procs import run

PKI_REV = "3"  # bump when the certificates change (names, SANs): the next `up` makes new ones


def cert(
    pki: Path, name: str, subject: str, ca: bool = False, server_ips: tuple[str, ...] = (), dns: tuple[str, ...] = ()
) -> None:
    key, crt = pki / f"{name}.key", pki / f"{name}.crt"
    if crt.exists():
        return
    run(["openssl", "genrsa", "-out", str(key), "2048"])
    if ca:
        run(
            [
                "openssl",
                "req",
                "-x509",
                "-new",
                "-nodes",
                "-key",
                str(key),
                "-sha256",
                "-days",
                "3650",
                "-subj",
                subject,
                "-out",
                str(crt),
            ]
        )
        return
    ext = pki / f"{name}.ext"
    lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment"]
    if server_ips or dns:
        alt = [f"IP:{ip}" for ip in server_ips] + [f"DNS:{d}" for d in dns]
        lines += ["extendedKeyUsage=serverAuth,clientAuth", "subjectAltName=" + ",".join(alt)]
    else:
        lines.append("extendedKeyUsage=clientAuth")
    ext.write_text("\n".join(lines) + "\n")
    csr = pki / f"{name}.csr"
    run(["openssl", "req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr)])
    run(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(pki / "ca.crt"),
            "-CAkey",
            str(pki / "ca.key"),
            "-CAcreateserial",
            "-days",
            "3650",
            "-sha256",
            "-extfile",
            str(ext),
            "-out",
            str(crt),
        ]
    )


def make_pki(pki: Path, server_ips: tuple[str, ...]) -> None:
    rev = pki / "rev"
    if pki.exists() and (not rev.exists() or rev.read_text().strip() != PKI_REV):
        shutil.rmtree(pki)
    pki.mkdir(parents=True, exist_ok=True)
    rev.write_text(PKI_REV + "\n")
    cert(pki, "ca", "/CN=yolo-operator-test-ca", ca=True)
    cert(
        pki,
        "apiserver",
        "/CN=kube-apiserver",
        server_ips=server_ips,
        dns=(
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ),
    )
    cert(pki, "apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client")
    cert(pki, "admin", "/O=system:masters/CN=kubernetes-admin")
    cert(pki, "controller-manager", "/CN=system:kube-controller-manager")
    cert(pki, "scheduler", "/CN=system:kube-scheduler")
    cert(pki, "kwok", "/O=system:masters/CN=kwok")
    cert(pki, "front-proxy-client", "/CN=front-proxy-client")  # the apiserver's client cert toward aggregated APIs
    if not (pki / "sa.key").exists():
        run(["openssl", "genrsa", "-out", str(pki / "sa.key"), "2048"])
        run(["openssl", "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")])


def kubeconfig(path: Path, pki: Path, user: str, port: int) -> Path:
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "yolo-local",
                "cluster": {"server": f"https://127.0.0.1:{port}", "certificate-authority": str(pki / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate": str(pki / f"{user}.crt"), "client-key": str(pki / f"{user}.key")},
            }
        ],
        "contexts": [{"name": "yolo-local", "context": {"cluster": "yolo-local", "user": user}}],
        "current-context": "yolo-local",
    }
    path.write_text(json.dumps(cfg, indent=2))
    return path
