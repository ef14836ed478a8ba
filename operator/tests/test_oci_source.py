"""model.source.uri: oci://: what the spec accepts, the init container the operator builds for
it, and the digest status.models records from its report. The fetch itself runs against the
cluster's registry in k8s-tests (test_oci_models.py, and real pods in test_pods_oci.py)."""

from __future__ import annotations

import json

import pytest
from op_helpers import META, sample_spec

from yolo_operator.builders.triton import DIGESTS_DIR, build_triton_deployment
from yolo_operator.spec import InvalidSpec, parse_spec
from yolo_operator.status import reported_digests, served_models

DIGEST = "sha256:" + "ab" * 32
REF = "oci://registry.example:5000/models/yolov8n:v1"


def _oci(uri: str = REF, **source: object) -> dict:
    return sample_spec(**{"model.source": {"uri": uri, **source}})


@pytest.mark.parametrize(
    "uri",
    [REF, f"oci://ghcr.io/acme/detectors/yolo11n@{DIGEST}", "oci://localhost/m", "oci://r.io/a/b_c-d:1.2.3-rc.1"],
)
def test_oci_references_are_accepted(uri: str) -> None:
    assert parse_spec(_oci(uri)).model.source.scheme == "oci"


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("oci://ghcr.io/Acme/m:v1", "not an OCI reference"),  # repositories are lower case
        ("oci://ghcr.io/m@sha256:1234", "not an OCI reference"),  # a digest has 64 hex digits
        ("oci://ghcr.io", "not an OCI reference"),  # no repository
        ("oci://ghcr.io/m:", "not an OCI reference"),
        ("ftp://host/m.onnx", "oci://"),
    ],
)
def test_bad_oci_references_are_invalid_specs(uri: str, says: str) -> None:
    with pytest.raises(InvalidSpec, match=says):
        parse_spec(_oci(uri))


def test_plain_http_is_for_oci_sources_only() -> None:
    with pytest.raises(InvalidSpec, match="plainHttp applies to oci://"):
        parse_spec(sample_spec(**{"model.source.plainHttp": True}))


def test_the_init_container_pulls_with_the_dockerconfigjson_secret_and_reports_the_digest() -> None:
    spec = parse_spec(_oci(secretRef={"name": "registry-credentials"}, plainHttp=True))
    pod = build_triton_deployment(spec, META)["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    script = init["command"][2]
    assert f"fetch-model --plain-http --digest-file {DIGESTS_DIR}/{spec.model.name} {REF} " in script
    assert script.splitlines()[-1] == f"fetch-model --report-digests {DIGESTS_DIR} /dev/termination-log"
    # The Secret is a file (a docker config.json), never env: its key is not an env name.
    assert "envFrom" not in init
    assert {"name": "DOCKER_CONFIG_FILE", "value": "/credentials/.dockerconfigjson"} in init["env"]
    assert {"name": "credentials", "mountPath": "/credentials", "readOnly": True} in init["volumeMounts"]
    assert {"name": "credentials", "secret": {"secretName": "registry-credentials"}} in pod["volumes"]


def test_an_https_registry_gets_no_plain_http_flag_and_other_sources_no_digest_step() -> None:
    script = build_triton_deployment(parse_spec(_oci()), META)["spec"]["template"]["spec"]["initContainers"][0]
    assert "--plain-http" not in script["command"][2]
    plain = build_triton_deployment(parse_spec(sample_spec()), META)["spec"]["template"]["spec"]["initContainers"][0]
    assert "--report-digests" not in plain["command"][2]


def test_a_canary_from_oci_is_fetched_the_same_way() -> None:
    spec = parse_spec(
        sample_spec(canary={"source": {"uri": "oci://r.io/models/yolo:v2", "plainHttp": True}, "percent": 10})
    )
    script = build_triton_deployment(spec, META)["spec"]["template"]["spec"]["initContainers"][0]["command"][2]
    canary = spec.model_names()["canary"]
    assert f"fetch-model --plain-http --digest-file {DIGESTS_DIR}/{canary} oci://r.io/models/yolo:v2" in script
    assert "--report-digests" in script


def _finished(report: dict, created: str = "2026-12-04T10:00:00Z") -> dict:
    term = {"exitCode": 0, "reason": "Completed", "message": json.dumps(report)}
    return {
        "metadata": {"creationTimestamp": created},
        "status": {"initContainerStatuses": [{"name": "fetch-model", "state": {"terminated": term}}]},
    }


def test_status_models_records_the_digest_of_the_reference_it_serves() -> None:
    spec = parse_spec(_oci())
    name = spec.model.name
    report = {"reason": "Served", "message": "...", "digests": {name: {"uri": REF, "digest": DIGEST}}}
    older = {"reason": "Served", "message": "...", "digests": {name: {"uri": REF, "digest": "sha256:" + "0" * 64}}}
    digests = reported_digests([_finished(older, "2026-12-04T09:00:00Z"), _finished(report)])
    assert digests == {name: {"uri": REF, "digest": DIGEST}}  # the newest pod's
    (model,) = served_models(spec, digests)
    assert model["source"] == REF and model["digest"] == DIGEST
    # A report about another reference (a pod from before the tag changed) is not this source's digest.
    stale = {name: {"uri": REF.replace(":v1", ":v0"), "digest": DIGEST}}
    assert "digest" not in served_models(spec, stale)[0]
    assert reported_digests([_finished({"reason": "Served", "message": "no oci"})]) == {}


def test_every_status_models_field_is_in_the_crds_status_schema() -> None:
    """The API server prunes status fields its schema does not name (a digest once vanished so)."""
    import yaml
    from op_helpers import ROOT

    crd = yaml.safe_load(
        (ROOT / "charts" / "yolo-operator" / "crds" / "yoloservices.serving.yolo.dev.yaml").read_text()
    )
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["models"]
    allowed = set(schema["items"]["properties"])
    spec = parse_spec(
        sample_spec(
            **{"model.source": {"uri": REF}},
            tiers=[{"name": "fast", "default": True}],
            canary={"source": {"uri": "oci://r.io/m:v2"}, "percent": 5},
        )
    )
    names = spec.model_names()
    # As the init container reports them: the current version's file (which the tiers share) and the canary's.
    digests = {
        spec.model.name: {"uri": REF, "digest": DIGEST},
        names["canary"]: {"uri": "oci://r.io/m:v2", "digest": DIGEST},
    }
    models = served_models(spec, digests)
    assert all("digest" in m for m in models), models
    assert set().union(*(m.keys() for m in models)) <= allowed
