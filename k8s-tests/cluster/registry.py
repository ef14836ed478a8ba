"""The cluster's OCI registry, next to the real node: distribution/distribution, built by build.sh.

    registry   localhost:15000 (REGISTRY), plain HTTP on loopback, storage in .cluster/registry/
               (removed by `down`). `make release` pushes the images and the chart there; the real
               node's containerd pulls from it as any node pulls from its registry: kubelet image
               pulls, pull policies, digests. containerd's hosts.toml for it is written here.
               A second, read-only process serves the same storage on the node IP (NODE_REGISTRY)
               for pods: oci:// model sources are fetched from there.
               It asks for credentials, as a private registry does (htpasswd, bcrypt): a user made
               afresh by each cluster-up, in .cluster/registry/credentials.json (0600). Pods pull
               with an imagePullSecret; anonymous requests get 401.

The registry holds what a release pushed while the cluster runs; `cluster-down` removes it with the
rest of the cluster's state.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import urllib.error
import urllib.request
from pathlib import Path

from . import procs

PORT = 15000
REGISTRY = f"localhost:{PORT}"
URL = f"http://127.0.0.1:{PORT}"
# The same storage, read-only, on the node IP: pods (an oci:// model source's init container)
# reach it there, as pods reach any registry; loopback is the pod's own.
NODE_IP = "198.18.255.1"  # realnode.NODE_IP (a test ties them)
NODE_REGISTRY = f"{NODE_IP}:{PORT}"
COMPONENTS = ("registry", "registry-node")
USER = "yolo"
REALM = "yolo-operator local cluster"


def missing(bin_dir: Path) -> list[str]:
    return [] if (bin_dir / "registry").exists() else [str(bin_dir / "registry")]


def config(storage: Path, htpasswd: Path, addr: str = f"127.0.0.1:{PORT}", readonly: bool = False) -> dict:
    storage_cfg: dict = {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}}
    if readonly:
        storage_cfg["maintenance"] = {"readonly": {"enabled": True}}
    return {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": storage_cfg,
        "http": {"addr": addr, "headers": {"X-Content-Type-Options": ["nosniff"]}},
        "auth": {"htpasswd": {"realm": REALM, "path": str(htpasswd)}},
    }


def credentials(state: Path) -> tuple[str, str]:
    """(user, password) of the running cluster's registry."""
    c = json.loads((state / "registry" / "credentials.json").read_text())
    return c["username"], c["password"]


def _get(url: str, auth: tuple[str, str] | None) -> dict:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    with urllib.request.urlopen(req, timeout=5) as r:
        return dict(json.load(r))


def hosts_toml() -> str:
    """containerd's registry host configuration: this registry speaks plain HTTP on loopback."""
    return f'server = "http://{REGISTRY}"\n\n[host."http://{REGISTRY}"]\n  capabilities = ["pull", "resolve"]\n'


def catalog(auth: tuple[str, str] | None) -> list[str]:
    return list(_get(f"{URL}/v2/_catalog", auth).get("repositories") or [])


def tags(repository: str, auth: tuple[str, str] | None) -> list[str]:
    try:
        return list(_get(f"{URL}/v2/{repository}/tags/list", auth).get("tags") or [])
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise


class Registry:
    def __init__(self, containerd_hosts_dir: Path) -> None:
        self.dir = procs.STATE / "registry"
        self.hosts_dir = containerd_hosts_dir

    def start(self) -> None:
        import bcrypt  # the dev extra; only the cluster needs it

        self.dir.mkdir(parents=True, exist_ok=True)
        password = secrets.token_urlsafe(18)
        creds = self.dir / "credentials.json"
        creds.write_text(json.dumps({"username": USER, "password": password}))
        os.chmod(creds, 0o600)
        htpasswd = self.dir / "htpasswd"
        htpasswd.write_text(f"{USER}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()}\n")
        os.chmod(htpasswd, 0o600)
        cfg = self.dir / "config.yml"
        cfg.write_text(json.dumps(config(self.dir / "data", htpasswd), indent=1))  # YAML is a superset of JSON
        host = self.hosts_dir / REGISTRY
        host.mkdir(parents=True, exist_ok=True)
        (host / "hosts.toml").write_text(hosts_toml())
        procs.start("registry", [procs.binary("registry"), "serve", str(cfg)])
        node_cfg = self.dir / "config-node.yml"
        node_cfg.write_text(
            json.dumps(config(self.dir / "data", htpasswd, f"{NODE_IP}:{PORT}", readonly=True), indent=1)
        )
        procs.start("registry-node", [procs.binary("registry"), "serve", str(node_cfg)])

    def wait_ready(self) -> None:
        def up() -> bool:
            try:  # anonymous: 401 with a Basic challenge once it serves
                urllib.request.urlopen(f"{URL}/v2/", timeout=2).close()
            except urllib.error.HTTPError as exc:
                return exc.code == 401 and "Basic" in (exc.headers.get("WWW-Authenticate") or "")
            return False

        procs.wait_for(f"the registry at {URL}", up, timeout=30, name="registry")
        node_url = URL.replace("127.0.0.1", NODE_IP)

        def node_up() -> bool:
            try:
                urllib.request.urlopen(f"{node_url}/v2/", timeout=2).close()
            except urllib.error.HTTPError as exc:
                return exc.code == 401
            except OSError:
                return False
            return False

        procs.wait_for(f"the registry's read-only copy at {node_url}", node_up, timeout=30, name="registry-node")
