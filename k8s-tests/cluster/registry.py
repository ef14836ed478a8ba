"""The cluster's OCI registry, next to the real node: distribution/distribution, built by build.sh.

    registry   localhost:15000 (REGISTRY), plain HTTP on loopback, storage in .cluster/registry/
               (removed by `down`). `make release` pushes the images and the chart there; the real
               node's containerd pulls from it as any node pulls from its registry: kubelet image
               pulls, pull policies, digests. containerd's hosts.toml for it is written here.

The registry holds what a release pushed while the cluster runs; `cluster-down` removes it with the
rest of the cluster's state.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from types import ModuleType

PORT = 15000
REGISTRY = f"localhost:{PORT}"
URL = f"http://127.0.0.1:{PORT}"
COMPONENTS = ("registry",)


def missing(bin_dir: Path) -> list[str]:
    return [] if (bin_dir / "registry").exists() else [str(bin_dir / "registry")]


def config(storage: Path) -> dict:
    return {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{PORT}", "headers": {"X-Content-Type-Options": ["nosniff"]}},
    }


def hosts_toml() -> str:
    """containerd's registry host configuration: this registry speaks plain HTTP on loopback."""
    return f'server = "http://{REGISTRY}"\n\n[host."http://{REGISTRY}"]\n  capabilities = ["pull", "resolve"]\n'


def catalog() -> list[str]:
    with urllib.request.urlopen(f"{URL}/v2/_catalog", timeout=5) as r:
        return list(json.load(r).get("repositories") or [])


def tags(repository: str) -> list[str]:
    try:
        with urllib.request.urlopen(f"{URL}/v2/{repository}/tags/list", timeout=5) as r:
            return list(json.load(r).get("tags") or [])
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise


class Registry:
    def __init__(self, cluster: ModuleType, containerd_hosts_dir: Path) -> None:
        self.c = cluster
        self.dir = cluster.STATE / "registry"
        self.hosts_dir = containerd_hosts_dir

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        cfg = self.dir / "config.yml"
        cfg.write_text(json.dumps(config(self.dir / "data"), indent=1))  # YAML is a superset of JSON
        host = self.hosts_dir / REGISTRY
        host.mkdir(parents=True, exist_ok=True)
        (host / "hosts.toml").write_text(hosts_toml())
        self.c._start("registry", [self.c.binary("registry"), "serve", str(cfg)])

    def wait_ready(self) -> None:
        def up() -> bool:
            with urllib.request.urlopen(f"{URL}/v2/", timeout=2) as r:
                return bool(r.status == 200)

        self.c._wait(f"the registry at {URL}", up, timeout=30, name="registry")
