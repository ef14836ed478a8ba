"""Discovery answers are reused for a few seconds: every reconcile asks whether KEDA and
ServiceMonitors are served, and 1,000 services made that 67 GETs a second."""

from __future__ import annotations

import time

from kubernetes.client.exceptions import ApiException

from yolo_operator import kube


def test_has_api_reuses_an_answer_for_api_cache_s_then_asks_again(monkeypatch):
    calls: list[str] = []
    answers = {"keda.sh/v1alpha1": {"resources": [{"kind": "ScaledObject"}]}}

    def fake_discovery(group_version: str):
        calls.append(group_version)
        if group_version not in answers:
            raise ApiException(status=404)
        return answers[group_version]

    now = [1000.0]
    monkeypatch.setattr(kube, "_discovery", fake_discovery)
    monkeypatch.setattr(kube, "_api_cache", {})
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    assert kube.has_api("keda.sh/v1alpha1", "ScaledObject") and kube.has_api("keda.sh/v1alpha1", "ScaledObject")
    assert not kube.has_api("monitoring.coreos.com/v1", "ServiceMonitor")
    assert not kube.has_api("monitoring.coreos.com/v1", "ServiceMonitor")
    assert len(calls) == 2, "one discovery GET per API within the window, a 404 included"
    answers["monitoring.coreos.com/v1"] = {"resources": [{"kind": "ServiceMonitor"}]}  # the CRD is installed
    now[0] += kube.API_CACHE_S
    assert kube.has_api("monitoring.coreos.com/v1", "ServiceMonitor"), "seen once the answer is API_CACHE_S old"
    assert len(calls) == 3
