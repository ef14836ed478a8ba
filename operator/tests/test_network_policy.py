"""NetworkPolicies: which exist for each switch, who may open which port, malformed peers, and the condition."""

from __future__ import annotations

import pytest
from op_helpers import META, sample_spec

from yolo_operator import builders as b
from yolo_operator import kube
from yolo_operator.children import desired_children
from yolo_operator.settings import OperatorSettings
from yolo_operator.spec import InvalidSpec, parse_spec
from yolo_operator.status import Condition, network_policy_condition, ready_condition

MONITORING = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


def policies(spec: dict, default: bool = True, metrics_from: list | None = None) -> dict[str, dict | None]:
    kids = desired_children(
        parse_spec(spec), META, False, network_policies=default, metrics_from=metrics_from or MONITORING
    )
    return {c.name: c.manifest for c in kids if c.kind == "NetworkPolicy"}


def _ingress(policy: dict) -> dict[int, list | None]:
    """port -> its `from` (None: any source)."""
    return {r["ports"][0]["port"]: r.get("from") for r in policy["spec"]["ingress"]}


def test_each_tier_gets_a_policy_unless_switched_off():
    assert all(policies(sample_spec()).values()) and set(policies(sample_spec())) == {"shapes-triton", "shapes-gateway"}
    # the service's own switch wins over the operator's default, either way
    assert not any(policies(sample_spec(**{"networkPolicy.enabled": False})).values())
    assert not any(policies(sample_spec(), default=False).values())
    assert all(policies(sample_spec(**{"networkPolicy.enabled": True}), default=False).values())


def test_triton_takes_grpc_from_its_own_gateway_and_metrics_from_the_metrics_peers_only():
    triton = policies(sample_spec())["shapes-triton"]
    assert triton["spec"]["podSelector"]["matchLabels"] == b.selector_labels(META, "triton")
    assert triton["spec"]["policyTypes"] == ["Ingress"]
    rules = _ingress(triton)
    assert rules[b.TRITON_GRPC] == [{"podSelector": {"matchLabels": b.selector_labels(META, "gateway")}}]
    assert rules[b.TRITON_METRICS] == MONITORING
    assert b.TRITON_HTTP not in rules, "no pod may open Triton's HTTP port (inference and model control)"


def test_no_metrics_peers_leaves_the_metrics_rule_out():
    """An empty `from` would admit every pod, so no peers means no rule, not an empty one."""
    triton = desired_children(parse_spec(sample_spec()), META, False, metrics_from=[])
    policy = next(c.manifest for c in triton if c.ref == "NetworkPolicy/shapes-triton")
    assert policy is not None and set(_ingress(policy)) == {b.TRITON_GRPC}


def test_the_gateway_is_open_unless_gateway_from_names_its_clients():
    assert _ingress(policies(sample_spec())["shapes-gateway"]) == {b.GATEWAY_PORT: None}
    peers = [
        {"podSelector": {"matchLabels": {"role": "frontend"}}},
        {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["vision"]}]}},
        {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
    ]
    gateway = policies(sample_spec(**{"networkPolicy.gatewayFrom": peers}))["shapes-gateway"]
    assert _ingress(gateway) == {b.GATEWAY_PORT: peers + MONITORING}


@pytest.mark.parametrize(
    ("peer", "message"),
    [
        ({}, "needs a podSelector, a namespaceSelector or an ipBlock"),
        ({"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}, "takes no podSelector"),
        ({"podSelector": {"matchLabel": {"a": "b"}}}, "matchLabel"),  # a typo would select every pod
        ({"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Is"}]}}, "operator"),
        ({"podSelecter": {}}, "podSelecter"),
    ],
)
def test_malformed_peers_are_invalid_specs(peer, message):
    with pytest.raises(InvalidSpec, match=message):
        parse_spec(sample_spec(**{"networkPolicy.gatewayFrom": [peer]}))


def test_the_operators_metrics_peers_are_validated_at_start(monkeypatch):
    monkeypatch.setenv(
        "YOLO_OPERATOR_NETWORK_POLICY_METRICS_FROM", '[{"namespaceSelector": {"matchLabels": {"a": "b"}}}]'
    )
    assert OperatorSettings().network_policy_metrics_from == [{"namespaceSelector": {"matchLabels": {"a": "b"}}}]
    monkeypatch.setenv("YOLO_OPERATOR_NETWORK_POLICY_METRICS_FROM", '[{"namespaceSelecter": {}}]')
    with pytest.raises(ValueError, match="namespaceSelecter"):
        OperatorSettings()
    assert OperatorSettings.model_fields["network_policy_metrics_from"].default_factory() == MONITORING  # type: ignore[misc]


def test_the_condition_says_applied_disabled_or_refused_and_ready_ignores_it():
    assert network_policy_condition(True, []).reason == "Applied"
    off = network_policy_condition(False, [])
    assert (off.status, off.reason) == ("False", "Disabled")
    refused = network_policy_condition(
        True, ["NetworkPolicy/shapes-gateway: spec.ingress[0].from[0].ipBlock.cidr: Invalid"]
    )
    assert (refused.status, refused.reason) == ("False", "ApplyFailed") and "ipBlock.cidr" in refused.message
    tiers = [Condition("TritonReady", "True", "Available", ""), Condition("GatewayReady", "True", "Available", "")]
    assert ready_condition([*tiers, refused]).status == "True"


def test_a_peer_that_selects_no_pod_is_said_and_ready_ignores_it():
    c = network_policy_condition(True, [], ['gatewayFrom[0] ({"podSelector":{"matchLabels":{"app":"nobody"}}})'])
    assert (c.status, c.reason) == ("False", "PeerMatchesNothing") and "gatewayFrom[0]" in c.message
    assert network_policy_condition(True, ["refused"], ["unmatched"]).reason == "ApplyFailed"  # the worse first
    tiers = [Condition("TritonReady", "True", "Available", ""), Condition("GatewayReady", "True", "Available", "")]
    assert ready_condition([*tiers, c]).status == "True"


def test_label_selectors_as_query_strings():
    assert kube.selector_string({"matchLabels": {"b": "2", "a": "1"}}) == "a=1,b=2"
    expressions = [
        {"key": "tier", "operator": "In", "values": ["web", "api"]},
        {"key": "env", "operator": "NotIn", "values": ["dev"]},
        {"key": "team", "operator": "Exists"},
        {"key": "legacy", "operator": "DoesNotExist"},
    ]
    assert kube.selector_string({"matchExpressions": expressions}) == "tier in (web,api),env notin (dev),team,!legacy"
    assert kube.selector_string({}) == ""


def test_a_peer_that_selects_pods_is_not_listed_again_for_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    """PeerMatchesNothing's lists: a matching peer is remembered (PEER_MATCH_CACHE_S), a peer that
    matches nothing is asked again at every reconcile, so the condition clears when pods come."""
    from yolo_operator import reconcile

    calls: list[str] = []
    pods = {"app": False}

    def any_pod(ns: str, selector: dict) -> bool:
        calls.append(ns)
        return pods["app"]

    monkeypatch.setattr(reconcile.kube, "any_pod", any_pod)
    monkeypatch.setattr(reconcile, "_peer_matches", {})
    spec = parse_spec(sample_spec(networkPolicy={"gatewayFrom": [{"podSelector": {"matchLabels": {"app": "x"}}}]}))
    assert reconcile._unmatched_peers(spec, "ns") and reconcile._unmatched_peers(spec, "ns")
    assert len(calls) == 2  # nothing matched: asked each time
    pods["app"] = True
    assert reconcile._unmatched_peers(spec, "ns") == [] and reconcile._unmatched_peers(spec, "ns") == []
    assert len(calls) == 3  # matched once, then remembered
    monkeypatch.setattr(reconcile, "PEER_MATCH_CACHE_S", 0.0)
    assert reconcile._unmatched_peers(spec, "ns") == [] and len(calls) == 4  # expired: asked again
