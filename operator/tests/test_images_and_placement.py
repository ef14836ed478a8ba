"""Default images come from the operator's settings (fed by the chart), Triton's from whether a GPU
is asked for; placement applies to both tiers."""

from __future__ import annotations

import posixpath

import pytest
import yaml
from op_helpers import META, ROOT, sample_spec

from yolo_operator import builders as b
from yolo_operator.settings import OperatorSettings
from yolo_operator.spec import ImageDefaults, parse_spec

CPU = {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}
LOCAL = ImageDefaults("gpu/triton:1", "cpu/triton:1", "my/gateway:1", "my/fetcher:1")


def _images(spec) -> tuple[str, str, str]:
    triton = b.build_triton_deployment(spec, META)["spec"]["template"]["spec"]
    gateway = b.build_gateway_deployment(spec, META)["spec"]["template"]["spec"]
    return triton["containers"][0]["image"], triton["initContainers"][0]["image"], gateway["containers"][0]["image"]


def test_a_service_without_a_gpu_gets_the_cpu_triton_image():
    assert _images(parse_spec(sample_spec(**{"triton.resources": CPU}), LOCAL)) == (
        "cpu/triton:1",
        "my/fetcher:1",
        "my/gateway:1",
    )


def test_a_gpu_service_gets_the_gpu_triton_image():
    spec = parse_spec(sample_spec(), LOCAL)
    assert spec.triton.gpus == 1
    assert _images(spec)[0] == "gpu/triton:1"


def test_images_named_in_the_spec_win():
    spec = parse_spec(
        sample_spec(
            **{"triton.resources": CPU, "triton.image": "x/t:2", "gateway.image": "x/g:2", "fetcherImage": "x/f:2"}
        ),
        LOCAL,
    )
    assert _images(spec) == ("x/t:2", "x/f:2", "x/g:2")


def test_settings_read_the_environment(monkeypatch):
    monkeypatch.setenv("YOLO_OPERATOR_TRITON_CPU_IMAGE", "localhost/yolo-operator/triton-cpu:dev")
    monkeypatch.setenv("YOLO_OPERATOR_RESYNC_SECONDS", "3")
    s = OperatorSettings()
    assert s.images().triton_cpu == "localhost/yolo-operator/triton-cpu:dev" and s.resync_seconds == 3


def chart_project_image(values: dict, chart: dict, name: str, override: str) -> str:
    """What _helpers.tpl's yolo-operator.projectImage renders."""
    repo, tag = values["image"]["repository"], values["image"]["tag"] or chart["appVersion"]
    return override or f"{posixpath.dirname(repo)}/{name}:{tag}"


def test_chart_defaults_are_the_operator_defaults():
    """One contract: the chart's default images (its own follow appVersion) and the operator's agree."""
    values = yaml.safe_load((ROOT / "charts" / "yolo-operator" / "values.yaml").read_text())
    chart = yaml.safe_load((ROOT / "charts" / "yolo-operator" / "Chart.yaml").read_text())
    s = OperatorSettings()
    images = values["defaults"]["images"]
    assert images["triton"] == s.triton_image
    assert chart_project_image(values, chart, "triton-cpu", images["tritonCpu"]) == s.triton_cpu_image
    assert chart_project_image(values, chart, "gateway", images["gateway"]) == s.gateway_image
    assert chart_project_image(values, chart, "model-fetcher", images["fetcher"]) == s.fetcher_image
    env = (ROOT / "charts" / "yolo-operator" / "templates" / "deployment.yaml").read_text()
    assert values["autoscaling"]["prometheusUrl"] == s.prometheus_url
    assert values["operator"]["childCacheSeconds"] == s.child_cache_seconds
    for name in (
        "TRITON_IMAGE",
        "TRITON_CPU_IMAGE",
        "GATEWAY_IMAGE",
        "FETCHER_IMAGE",
        "PROMETHEUS_URL",
        "SERVICE_MONITORS",
        "RESYNC_SECONDS",
        "WAIT_SECONDS",
        "CHILD_CACHE_SECONDS",
        "WATCH_SERVER_TIMEOUT",
        "PEERING_LIFETIME",
    ):
        assert f"name: YOLO_OPERATOR_{name}\n" in env
        assert name.lower() in OperatorSettings.model_fields


def test_gateway_placement_and_triton_drain():
    toleration = {"key": "yolo.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}
    spec = parse_spec(
        sample_spec(
            **{"triton.resources": CPU, "gateway.nodeSelector": {"pool": "cpu"}, "gateway.tolerations": [toleration]}
        )
    )
    gw = b.build_gateway_deployment(spec, META)["spec"]["template"]["spec"]
    assert gw["nodeSelector"] == {"pool": "cpu"} and gw["tolerations"] == [toleration]
    triton = b.build_triton_deployment(spec, META)["spec"]["template"]["spec"]
    assert "tolerations" not in triton  # no GPU: no GPU toleration either
    stop = triton["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert triton["terminationGracePeriodSeconds"] > stop + b.TRITON_EXIT_TIMEOUT_SECONDS


def test_service_monitor_scrapes_the_metrics_port_of_both_tiers():
    spec = parse_spec(sample_spec(**{"monitoring.serviceMonitor": True}))
    sm = b.build_service_monitor(spec, META)
    assert [e["port"] for e in sm["spec"]["endpoints"]] == ["metrics"]
    triton_ports = {p["name"]: p["port"] for p in b.build_triton_service(spec, META)["spec"]["ports"]}
    gateway_ports = {p["name"]: p["port"] for p in b.build_gateway_service(spec, META)["spec"]["ports"]}
    assert triton_ports["metrics"] == b.TRITON_METRICS and gateway_ports["metrics"] == b.GATEWAY_PORT


def test_the_gateway_deployment_env_is_valid_gateway_settings():
    """One contract between the operator and the gateway: every YOLO_GATEWAY_* variable the
    operator writes is a field of the gateway's own Settings, with a value it accepts."""
    from yolo_gateway.settings import Settings  # noqa: PLC0415 - the gateway package, in the same dev environment

    spec = parse_spec(
        sample_spec(**{"gateway.limits": {"maxBodyBytes": 1 << 20, "maxPixels": 10**7, "maxBatchImages": 4}})
    )
    (container,) = b.build_gateway_deployment(spec, META)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    prefix = Settings.model_config["env_prefix"]
    fields = {prefix + name.upper() for name in Settings.model_fields}
    assert set(env) <= fields, set(env) - fields
    settings = Settings(**{k[len(prefix) :].lower(): v for k, v in env.items()})
    assert (settings.max_body_bytes, settings.max_pixels, settings.max_batch_images) == (1 << 20, 10**7, 4)
    assert settings.triton_url == b.triton_target(META) and settings.port == b.GATEWAY_PORT
    assert settings.shutdown_grace_s == spec.gateway.shutdown_grace_seconds
    # the metric the autoscalers read is the one the gateway exports
    from yolo_gateway import metrics  # noqa: PLC0415

    assert metrics.INFLIGHT._name == b.GATEWAY_INFLIGHT_METRIC
    assert metrics.TRITON_REQUESTS._name == b.GATEWAY_TRITON_METRIC
    assert settings.cold_start_timeout_s == 0, "no scale to zero: the gateway's readiness follows Triton"


def test_gateway_auth_mounts_the_secret_and_sets_valid_gateway_settings():
    from yolo_gateway.settings import Settings  # noqa: PLC0415
    from yolo_operator.spec import InvalidSpec  # noqa: PLC0415

    off = b.build_gateway_deployment(parse_spec(sample_spec()), META)["spec"]["template"]["spec"]
    assert [v["name"] for v in off["volumes"]] == ["tmp"]
    assert not any(e["name"] == "YOLO_GATEWAY_API_KEYS_DIR" for e in off["containers"][0]["env"])
    auth = {
        "enabled": True,
        "secretRef": {"name": "api-keys"},
        "requestsPerSecond": 2.5,
        "burst": 5,
        "protectMetrics": True,
    }
    pod = b.build_gateway_deployment(parse_spec(sample_spec(**{"gateway.auth": auth})), META)["spec"]["template"][
        "spec"
    ]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    prefix = Settings.model_config["env_prefix"]
    settings = Settings(**{k[len(prefix) :].lower(): v for k, v in env.items()})
    assert (settings.api_keys_dir, settings.rate_limit_per_s, settings.rate_limit_burst, settings.protect_metrics) == (
        b.API_KEYS_DIR,
        2.5,
        5,
        True,
    )
    assert {"name": "api-keys", "mountPath": b.API_KEYS_DIR, "readOnly": True} in container["volumeMounts"]
    assert {"name": "api-keys", "secret": {"secretName": "api-keys", "defaultMode": 0o440}} in pod["volumes"]
    with pytest.raises(InvalidSpec, match="needs gateway.auth.secretRef"):
        parse_spec(sample_spec(**{"gateway.auth": {"enabled": True}}))


def test_gateway_tls_mounts_the_secret_serves_https_and_is_scraped_over_https():
    from yolo_gateway.settings import Settings  # noqa: PLC0415

    plain = parse_spec(sample_spec(**{"monitoring.serviceMonitor": True}))
    (c,) = b.build_gateway_deployment(plain, META)["spec"]["template"]["spec"]["containers"]
    assert "scheme" not in c["readinessProbe"]["httpGet"]
    assert not any(e["name"].startswith("YOLO_GATEWAY_TLS") for e in c["env"])

    spec = parse_spec(
        sample_spec(**{"gateway.tls": {"secretRef": {"name": "gw-cert"}}, "monitoring.serviceMonitor": True})
    )
    dep = b.build_gateway_deployment(spec, META)
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    prefix = Settings.model_config["env_prefix"]
    settings = Settings(**{k[len(prefix) :].lower(): v for k, v in env.items()})
    assert (settings.tls_certfile, settings.tls_keyfile) == (f"{b.TLS_DIR}/tls.crt", f"{b.TLS_DIR}/tls.key")
    assert {"name": "tls", "mountPath": b.TLS_DIR, "readOnly": True} in container["volumeMounts"]
    # optional: a missing Secret is the gateway's TLSInvalid line, not a pod stuck in ContainerCreating
    assert {"name": "tls", "secret": {"secretName": "gw-cert", "defaultMode": 0o440, "optional": True}} in pod[
        "volumes"
    ]
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert container["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scheme"] == "https"
    ports = {p["name"]: p for p in b.build_gateway_service(spec, META)["spec"]["ports"]}
    assert ports["http"]["appProtocol"] == "https"
    assert ports[b.GATEWAY_METRICS_TLS_PORT_NAME]["port"] == b.GATEWAY_PORT and "metrics" not in ports
    endpoints = {e["port"]: e for e in b.build_service_monitor(spec, META)["spec"]["endpoints"]}
    assert endpoints["metrics"].get("scheme") is None  # Triton's, clear text
    assert endpoints[b.GATEWAY_METRICS_TLS_PORT_NAME]["scheme"] == "https"


def test_triton_tls_serves_grpc_with_the_secret_and_the_gateway_verifies_it_with_ca_crt_only():
    import subprocess  # noqa: PLC0415

    from yolo_gateway.settings import Settings  # noqa: PLC0415

    spec = parse_spec(sample_spec(**{"triton.tls": {"secretRef": {"name": "triton-cert"}}}))
    pod = b.build_triton_deployment(spec, META)["spec"]["template"]["spec"]
    triton = next(c for c in pod["containers"] if c["name"] == "triton")
    assert "--grpc-use-ssl=true" in triton["args"]
    assert f"--grpc-server-cert={b.TRITON_TLS_DIR}/tls.crt" in triton["args"]
    assert f"--grpc-server-key={b.TRITON_TLS_DIR}/tls.key" in triton["args"]
    assert {"name": "tls", "mountPath": b.TRITON_TLS_DIR, "readOnly": True} in triton["volumeMounts"]
    assert {"name": "tls", "secret": {"secretName": "triton-cert", "defaultMode": 0o440, "optional": True}} in pod[
        "volumes"
    ]
    # The start script: a missing file is one TLSInvalid line; else Triton gets exactly its args.
    env = {e["name"]: e["value"] for e in triton["env"]}
    script, name = triton["command"][2], triton["command"][3]
    r = subprocess.run(
        ["/bin/sh", "-c", script, name, "--x"], env={**env, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True
    )
    assert r.returncode == 1
    assert (
        r.stdout.strip() == f"TLSInvalid: tls.crt is missing from the Secret triton-cert ({b.TRITON_TLS_DIR}/tls.crt)"
    )

    (gw,) = b.build_gateway_deployment(spec, META)["spec"]["template"]["spec"]["containers"]
    gw_env = {e["name"]: e["value"] for e in gw["env"]}
    prefix = Settings.model_config["env_prefix"]
    settings = Settings(**{k[len(prefix) :].lower(): v for k, v in gw_env.items()})
    assert settings.triton_ca_file == f"{b.TRITON_CA_DIR}/ca.crt"
    assert settings.triton_tls_name == f"{META.name}-triton.{META.namespace}.svc"
    gw_pod = b.build_gateway_deployment(spec, META)["spec"]["template"]["spec"]
    (ca,) = [v for v in gw_pod["volumes"] if v["name"] == "triton-ca"]
    assert ca["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}], "the gateway never mounts Triton's key"

    plain = b.build_triton_deployment(parse_spec(sample_spec()), META)["spec"]["template"]["spec"]
    assert next(c for c in plain["containers"] if c["name"] == "triton")["command"] == ["tritonserver"]


def test_gateway_cache_settings_reach_the_gateway():
    from yolo_gateway.settings import Settings  # noqa: PLC0415

    def settings(**patch: object) -> Settings:
        (container,) = b.build_gateway_deployment(parse_spec(sample_spec(**patch)), META)["spec"]["template"]["spec"][
            "containers"
        ]
        prefix = Settings.model_config["env_prefix"]
        return Settings(**{e["name"][len(prefix) :].lower(): e["value"] for e in container["env"]})

    assert settings().cache_ttl_s == 0
    on = settings(**{"gateway.cache": {"enabled": True, "ttlSeconds": 2.5, "maxEntries": 64, "maxDifference": 4}})
    assert (on.cache_ttl_s, on.cache_max_entries, on.cache_max_difference) == (2.5, 64, 4)


def test_image_pull_secrets_reach_both_tiers_and_are_absent_unless_asked_for():
    spec = parse_spec(sample_spec(imagePullSecrets=[{"name": "regcred"}, {"name": "mirror"}]), LOCAL)
    for build in (b.build_triton_deployment, b.build_gateway_deployment):
        pod = build(spec, META)["spec"]["template"]["spec"]
        assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]
    plain = parse_spec(sample_spec(), LOCAL)
    for build in (b.build_triton_deployment, b.build_gateway_deployment):
        assert "imagePullSecrets" not in build(plain, META)["spec"]["template"]["spec"]


def test_an_image_pull_secret_without_a_name_is_refused():
    with pytest.raises(Exception, match="name"):
        parse_spec(sample_spec(imagePullSecrets=[{"name": ""}]), LOCAL)
