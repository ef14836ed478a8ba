"""Running the real thing on the real node: the project's images, the chart's in-cluster operator,
the object store and the CPU sample (the load generator is load.py). Used by the pod tests (conftest.py,
test_pods.py) and by `make k8s-demo` (demo.py).

Everything here talks only to loopback (the apiserver) and to the pods and Services of the
cluster our own scripts started (198.18.0.0/15)."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import secrets
import ssl
import string
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import s3
import yaml
from e2e_helpers import CHART, RELEASE, RELEASE_NS, ROOT, Kube, cluster, condition, patch_spec, run, wait_for

from yolo_tools import release as rel

realnode = cluster.realnode

MANIFESTS = Path(__file__).parent / "manifests"
STORE_NS = "yolo-store"
STORE_URL = f"http://s3.{STORE_NS}.svc.cluster.local"
HTTP_MODEL_URL = f"http://models.{STORE_NS}.svc.cluster.local/yolo/model.onnx"
BUCKET, KEY = "models", "yolo/model.onnx"
MODEL_FILE = ROOT / "model_repository" / "local" / "yolo" / "1" / "model.onnx"
LOCAL_VALUES = CHART / "ci" / "local-values.yaml"
SECRET = "model-store"  # the YoloService's model.source.secretRef in its namespace
REGISTRY_SECRET = "yolo-registry"  # the cluster registry's pull secret (registry_pull_secret)
PLACEMENT = {
    "nodeSelector": {realnode.NODE_LABEL: "true"},
    "tolerations": [{"key": realnode.NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
}


def ctr(*args: str, check: bool = True) -> str:
    return run("ctr", "-a", str(realnode.CONTAINERD_SOCK), "-n", "k8s.io", *args, check=check).stdout


# --------------------------------------------------------------------------- images


def build_and_push_images() -> None:
    """`make images` (cached: seconds when nothing changed) and the S3 store's image, pushed to the
    cluster's registry, from which the real node pulls them (dev_images(), store_image())."""
    if not realnode.CONTAINERD_SOCK.exists():
        raise AssertionError(f"no containerd at {realnode.CONTAINERD_SOCK}: the cluster has no real node")
    r = run("python3", str(ROOT / "docker" / "build-images.py"), "--push", check=False)
    if r.returncode != 0:
        raise AssertionError(f"make images failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    push_store_image()


def store_image() -> str:
    """Where the S3 store's image is in the cluster's registry: yolo-store/s3 at the tag build.sh gave it."""
    built = (cluster.BIN / "node-images" / "s3.ref").read_text().strip()  # localhost/yolo-operator/s3:<version>
    return f"{cluster.registry.REGISTRY}/yolo-store/s3:{built.rsplit(':', 1)[1]}"


def push_store_image() -> None:
    """The store's image, a cluster part that build.sh writes as an OCI archive, pushed to the
    cluster's registry with its credentials, as the project's images are: no pod's image is
    imported into the node by hand (only the node's own pause image is, as node images are)."""
    archive = (cluster.BIN / "node-images" / "s3.oci.tar").resolve()
    policy = ["--signature-policy", str(ROOT / ".cache" / "images" / "policy.json")]
    pulled = run(*rel.buildah("pull", "--quiet", *policy, f"oci-archive:{archive}"), check=False)
    assert pulled.returncode == 0, f"buildah pull of {archive}: {pulled.stderr[-2000:]}"
    with tempfile.TemporaryDirectory() as tmp:
        auth = rel.write_authfile(
            cluster.registry.REGISTRY, *cluster.registry.credentials(cluster.STATE), Path(tmp) / "auth.json"
        )
        image_id = pulled.stdout.strip().splitlines()[-1]
        push = ["push", "--quiet", "--tls-verify=false", "--authfile", str(auth), *policy]
        pushed = run(*rel.buildah(*push, image_id, f"docker://{store_image()}"), check=False)
    assert pushed.returncode == 0, f"buildah push of the store's image: {pushed.stderr[-2000:]}"


def dev_images() -> dict[str, Any]:
    """What `make images` pushed to the cluster's registry: {registry, tag, images: name -> ref@digest}."""
    f = cluster.STATE / "registry" / "dev-images.json"
    if not f.exists():
        raise AssertionError(f"{f} missing: make images has not pushed to this cluster's registry")
    return dict(json.loads(f.read_text()))


def registry_pull_secret(kube: Kube, namespace: str) -> None:
    """The cluster registry's credentials as a kubernetes.io/dockerconfigjson Secret in `namespace`,
    named by its default ServiceAccount's imagePullSecrets: every pod there that names none of its
    own pulls with it (the usual way to give a namespace a private registry)."""
    config = rel.docker_config(cluster.registry.REGISTRY, *cluster.registry.credentials(cluster.STATE))
    kube.apply(dockerconfig_secret(REGISTRY_SECRET, json.dumps(config).encode(), namespace))
    wait_for(f"the default ServiceAccount in {namespace}", lambda: kube.get("serviceaccount", "default", namespace))
    patch = json.dumps({"imagePullSecrets": [{"name": REGISTRY_SECRET}]})
    kube.kubectl("patch", "serviceaccount", "default", "-n", namespace, "-p", patch)


# --------------------------------------------------------------------------- the object store


def _render(path: Path, **values: str) -> list[dict[str, Any]]:
    text = string.Template(path.read_text()).substitute(values)
    return [d for d in yaml.safe_load_all(text) if d]


@dataclass
class Store:
    """versitygw on the real node (manifests/store.yaml), seeded with the bundled model, and the
    same file over plain HTTP (manifests/http.yaml). Credentials are made afresh for each run."""

    kube: Kube
    creds: s3.Credentials = field(
        default_factory=lambda: s3.Credentials("yolo-" + secrets.token_hex(4), secrets.token_urlsafe(24))
    )

    @property
    def endpoint(self) -> str:
        """The store's ClusterIP, as the host reaches it (through kube-proxy)."""
        return "http://" + self.kube.get("service", "s3", STORE_NS)["spec"]["clusterIP"]

    def deploy(self) -> Store:
        self.kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": STORE_NS}})
        registry_pull_secret(self.kube, STORE_NS)  # the HTTP server runs the model-fetcher image
        fetcher = local_images()["fetcher"]
        values = {
            "S3_IMAGE": store_image(),
            "FETCHER_IMAGE": fetcher,
            "ACCESS_KEY": self.creds.access_key,
            "SECRET_KEY": self.creds.secret_key,
        }
        for manifest, deployment in (("store.yaml", "s3"), ("http.yaml", "models")):
            items = _render(MANIFESTS / manifest, **values)
            for d in items:  # new credentials roll the pods (their env comes from the Secret)
                if d["kind"] == "Deployment":
                    d["spec"]["template"]["metadata"].setdefault("annotations", {})["yolo.dev/credentials"] = (
                        self.revision
                    )
            self.kube.apply({"apiVersion": "v1", "kind": "List", "items": items})
            self.kube.kubectl("rollout", "status", f"deployment/{deployment}", "-n", STORE_NS, "--timeout=120s")
            if deployment == "s3":
                self.seed()  # before the HTTP server's init container copies the model out of the store
        return self

    @property
    def revision(self) -> str:
        return hashlib.sha256(f"{self.creds.access_key}:{self.creds.secret_key}".encode()).hexdigest()[:12]

    def seed(self) -> None:
        """Bucket `models`, key `yolo/model.onnx`: the bundled model, uploaded from the host."""
        data = MODEL_FILE.read_bytes()

        def put_bucket() -> bool:
            try:
                status, body = s3.request("PUT", f"{self.endpoint}/{BUCKET}", self.creds)
            except OSError as exc:  # the Service is seconds old: kube-proxy may not have synced yet
                raise AssertionError(str(exc)) from exc
            assert status in (200, 409), (status, body[:300])  # 409: it exists (BucketAlreadyOwnedByYou)
            return True

        wait_for("the store to create the bucket", put_bucket, timeout=60, interval=1)
        status, body = s3.request("PUT", f"{self.endpoint}/{BUCKET}/{KEY}", self.creds, data, timeout=30)
        assert status == 200, (status, body[:300])
        status, body = s3.request("GET", f"{self.endpoint}/{BUCKET}/{KEY}", self.creds, timeout=30)
        assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(data).digest(), status

    def secret(self, namespace: str, name: str = SECRET, creds: s3.Credentials | None = None) -> dict[str, Any]:
        """The Secret a YoloService's model.source.secretRef names (the fetcher's envFrom)."""
        c = creds or self.creds
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "type": "Opaque",
            "stringData": {
                "AWS_ACCESS_KEY_ID": c.access_key,
                "AWS_SECRET_ACCESS_KEY": c.secret_key,
                "AWS_ENDPOINT_URL": STORE_URL,
                "AWS_REGION": c.region,
            },
        }


def local_images() -> dict[str, str]:
    """The default images the in-cluster operator gives a YoloService: the project's images beside
    the operator's in the cluster's registry, with its tag (_helpers.tpl: projectImage)."""
    d = dev_images()
    names = {"tritonCpu": "triton-cpu", "gateway": "gateway", "fetcher": "model-fetcher"}
    return {key: f"{d['registry']}/yolo-operator/{name}:{d['tag']}" for key, name in names.items()}


def local_chart_values() -> list[str]:
    """helm flags on top of ci/local-values.yaml: the operator image's tag that `make images` pushed
    (the other images follow it) and the registry's pull secret (registry_pull_secret)."""
    d = dev_images()
    want = f"{d['registry']}/yolo-operator/operator"
    assert yaml.safe_load(LOCAL_VALUES.read_text())["image"]["repository"] == want, LOCAL_VALUES
    return ["--set", f"image.tag={d['tag']}", "--set-json", f'imagePullSecrets=[{{"name": "{REGISTRY_SECRET}"}}]']


# --------------------------------------------------------------------------- the in-cluster operator


def install_operator(kube: Kube, namespaces: list[str], *extra: str) -> None:
    """helm install the chart with the local values: the operator runs as a pod from its image on
    the real node, under the chart's RBAC, watching only `namespaces` (Roles there, no ClusterRole)."""
    for ns in namespaces:
        if not kube.get("namespace", ns):
            raise AssertionError(f"namespace {ns} must exist before the chart's Roles go in")
    if not kube.get("namespace", RELEASE_NS):
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": RELEASE_NS}})
    registry_pull_secret(kube, RELEASE_NS)
    args = ["upgrade", "--install", RELEASE, str(CHART), "-n", RELEASE_NS, "-f", str(LOCAL_VALUES)]
    args += local_chart_values()
    args += ["--set", "rbac.clusterWide=false", "--set", "watchNamespaces={" + ",".join(namespaces) + "}"]
    args += [
        "--set",
        "operator.resyncSeconds=10",
        "--set",
        "operator.waitSeconds=2",
        *extra,
        "--wait",
        "--timeout=180s",
    ]
    r = kube.helm(*args, check=False)
    if r.returncode != 0:
        pods = kube.kubectl("get", "pods", "-n", RELEASE_NS, "-o", "wide", check=False).stdout
        raise AssertionError(f"helm install failed:\n{r.stderr[-3000:]}\n{pods}")


def uninstall_operator(kube: Kube) -> None:
    kube.helm("uninstall", RELEASE, "-n", RELEASE_NS, "--wait", "--timeout=90s", check=False)


def operator_logs(kube: Kube) -> str:
    return kube.kubectl("logs", "-n", RELEASE_NS, "deployment/" + RELEASE, "--tail=200", check=False).stdout


# --------------------------------------------------------------------------- registry credentials


def dockerconfig_secret(name: str, config: bytes, namespace: str | None = None) -> dict[str, Any]:
    """A kubernetes.io/dockerconfigjson Secret holding a docker config.json (its bytes)."""
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    data = {".dockerconfigjson": base64.b64encode(config).decode()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "kubernetes.io/dockerconfigjson",
        "data": data,
    }


def released_chart_overrides(pull_secret: str) -> list[str]:
    """What the tests that install a released chart override, and nothing else: the real node's
    placement, one watched namespace (never meeting the pod tests' operator) and a pull secret."""
    return [
        "--set",
        "rbac.clusterWide=false",
        "--set-json",
        f"nodeSelector={json.dumps(PLACEMENT['nodeSelector'])}",
        "--set-json",
        f"tolerations={json.dumps(PLACEMENT['tolerations'])}",
        "--set-json",
        f'imagePullSecrets=[{{"name": "{pull_secret}"}}]',
    ]


# --------------------------------------------------------------------------- the sample


def cpu_sample(name: str = "yolo", **patch: Any) -> dict[str, Any]:
    """examples/yoloservice-cpu.yaml, placed on the real node (both tiers), with dotted patches."""
    docs = [d for d in yaml.safe_load_all((ROOT / "examples" / "yoloservice-cpu.yaml").read_text()) if d]
    obj = copy.deepcopy(next(d for d in docs if d["kind"] == "YoloService"))
    for tier in ("triton", "gateway"):
        obj["spec"].setdefault(tier, {}).update(copy.deepcopy(PLACEMENT))
    return patch_spec(obj, name, **patch)


def wait_ready(kube: Kube, name: str, namespace: str, timeout: float = 240) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = kube.get("yoloservice", name, namespace)
        if (
            obj
            and condition(obj, "Ready").get("status") == "True"
            and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]
        ):
            return obj
        return None

    try:
        return wait_for(f"YoloService {name} Ready", check, timeout=timeout, interval=1)
    except AssertionError as exc:
        pods = kube.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
        obj = kube.get("yoloservice", name, namespace)
        raise AssertionError(f"{exc}\n{pods}\nstatus: {json.dumps((obj or {}).get('status'), indent=1)}") from None


def _selector(name: str, component: str) -> str:
    return f"app.kubernetes.io/instance={name},app.kubernetes.io/component={component}"


def pods(kube: Kube, namespace: str, name: str, component: str) -> list[dict[str, Any]]:
    items = kube.items("pods", namespace, _selector(name, component))
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def rollout_done(kube: Kube, namespace: str, name: str, component: str, old_uids: set[str]) -> None:
    """Until the tier's Deployment has rolled out and none of `old_uids` is left."""
    kube.kubectl("rollout", "status", f"deployment/{name}-{component}", "-n", namespace, "--timeout=240s")
    wait_for(
        f"the old {component} pods gone",
        lambda: (
            not old_uids & {p["metadata"]["uid"] for p in kube.items("pods", namespace, _selector(name, component))}
        ),
        timeout=120,
        interval=1,
    )


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions", []))


def ready_pods(kube: Kube, namespace: str, name: str, component: str) -> list[dict[str, Any]]:
    return [p for p in pods(kube, namespace, name, component) if is_ready(p)]


def gateway_url(kube: Kube, name: str, namespace: str) -> str:
    svc = kube.get("service", name, namespace)
    return f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"


def service_answers(url: str, timeout: float = 30) -> None:
    """Wait (bounded) until the gateway's Service answers /healthz. A pod Ready in the API is in
    the Service's endpoints at once, but kube-proxy programs the node's rules a moment later (until
    then the Service refuses connections): a test that sends right after Ready waits for this."""

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as r:  # noqa: S310 - our gateway Service
                return r.status == 200
        except OSError:
            return False

    wait_for(f"the Service {url} to answer", answers, timeout=timeout, interval=0.5)


def triton_model_json(pod_ip: str, model: str, what: str, timeout: float = 5) -> dict[str, Any]:
    """A Triton pod's own JSON about one model, over its HTTP port: `what` is "stats" or "config"."""
    with urllib.request.urlopen(f"http://{pod_ip}:8000/v2/models/{model}/{what}", timeout=timeout) as r:  # noqa: S310 - our pod
        return json.loads(r.read())


def triton_served(pod_ip: str, model: str = "yolo") -> int:
    """Requests this Triton pod has served successfully (its own statistics API)."""
    stats = triton_model_json(pod_ip, model, "stats", timeout=3)
    return sum(int(m["inference_stats"]["success"]["count"]) for m in stats.get("model_stats", []))


# --------------------------------------------------------------------------- requests and load


def detect(
    url: str, image: bytes, timeout: float = 15, context: ssl.SSLContext | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One POST /v1/detect on a new connection (urllib closes it): (status, headers, body).
    `context`: how an https:// gateway is verified."""
    req = urllib.request.Request(f"{url}/v1/detect", data=image, method="POST", headers={"content-type": "image/jpeg"})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as r:  # noqa: S310 - our gateway Service
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
    except OSError as e:
        return 0, {}, str(e).encode()
