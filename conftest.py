"""Test tiers: the one place that says which tier each test belongs to.

| tier   | needs                                              | make target      |
|--------|----------------------------------------------------|------------------|
| unit   | nothing: no Triton, no cluster, no build           | make test-unit   |
| triton | a real tritonserver (PyPI) and `make prod-models`  | make test-triton |
| k8s    | the local control plane, built from Go modules     | make test-k8s    |
| pods   | the images, built; the control plane's real node   | make test-pods   |

A test is `unit` unless TIERS below names its file (or its node id) with another tier. The
table is checked against what each test really asks for: a test whose fixtures start a Triton
(`triton`), the control plane (`kube`) or the real node (`real_node`) in a lower tier is a
collection error, and a `unit` test that starts a tritonserver anyway fails when it tries.

`make test` runs every tier in one session, ordered unit -> triton -> k8s -> pods (a stable sort,
so the order inside a tier is the files' own). The pod fixtures therefore never depend on which
file pytest happened to collect first; each tier also runs alone.
"""

from __future__ import annotations

import pytest

ORDER = ("unit", "triton", "k8s", "pods")

# File (or file::test) -> tier, for every test that is not a unit test.
TIERS: dict[str, str] = {
    # A real tritonserver from the nvidia-pytriton wheel.
    "gateway/tests/test_cache.py::test_a_repeated_frame_is_answered_from_the_cache": "triton",
    "gateway/tests/test_dashboard.py": "triton",
    "gateway/tests/test_gateway_tls.py": "triton",
    "gateway/tests/test_gateway_triton.py": "triton",
    "gateway/tests/test_hostile_clients.py": "triton",
    "gateway/tests/test_operator_configs.py": "triton",
    "gateway/tests/test_optimize.py": "triton",
    "gateway/tests/test_production_models.py": "triton",
    "gateway/tests/test_serving_behaviour.py": "triton",
    "gateway/tests/test_tiers_versions.py": "triton",
    "gateway/tests/test_trained_model.py": "triton",
    "tools/tests/test_demo.py": "triton",
    "tools/tests/test_stack_signals.py": "triton",
    "tools/tests/test_standin_rules.py": "triton",
    # The local control plane (apiserver, controller-manager, scheduler, kwok nodes) and helm.
    "k8s-tests/test_chart.py": "k8s",
    "k8s-tests/test_e2e.py": "k8s",
    "tools/tests/test_release.py::test_the_released_chart_renders_the_registry_images_at_the_chart_version": "k8s",
    # The built images (buildah, as root), then real pods on the real kubelet node: containerd, KEDA, Prometheus.
    "docker/tests/test_images.py": "pods",
    "k8s-tests/test_real_node.py": "pods",
    "k8s-tests/test_pods.py": "pods",
    "k8s-tests/test_pods_autoscale.py": "pods",
    "k8s-tests/test_pods_models.py": "pods",
    "k8s-tests/test_pods_oci.py": "pods",
    "k8s-tests/test_pods_release.py": "pods",
    "k8s-tests/test_pods_tls.py": "pods",
    "k8s-tests/test_pods_upgrade.py": "pods",
}

# A fixture (anywhere in a test's closure) -> the lowest tier that may use it.
FIXTURE_TIERS = {"triton": "triton", "kube": "k8s", "real_node": "pods"}


def tier_of(nodeid: str) -> str:
    path, _, rest = nodeid.partition("::")
    test = rest.split("[", 1)[0]
    return TIERS.get(f"{path}::{test}") or TIERS.get(path) or "unit"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "unit: needs nothing: no Triton, no cluster, no build (conftest.TIERS)")
    config.addinivalue_line("markers", "triton: starts a real tritonserver (conftest.TIERS)")
    config.addinivalue_line("markers", "k8s: runs against the real local control plane (conftest.TIERS)")
    config.addinivalue_line("markers", "pods: runs real pods on the local cluster's kubelet node (conftest.TIERS)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wrong = []
    for item in items:
        tier = tier_of(item.nodeid)
        needs = [FIXTURE_TIERS[f] for f in getattr(item, "fixturenames", ()) if f in FIXTURE_TIERS]
        need = max(needs, key=ORDER.index, default="unit")
        if ORDER.index(need) > ORDER.index(tier):
            wrong.append(f"{item.nodeid}: in tier {tier}, but its fixtures need {need}")
        item.add_marker(getattr(pytest.mark, tier))
        item.user_properties.append(("tier", tier))
    if wrong:
        raise pytest.UsageError("conftest.TIERS disagrees with the tests' fixtures:\n  " + "\n  ".join(wrong))
    items.sort(key=lambda item: ORDER.index(tier_of(item.nodeid)))


@pytest.fixture(autouse=True)
def _unit_tests_start_no_triton(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit test that starts a tritonserver belongs in TIERS: fail it, naming the table."""
    if tier_of(request.node.nodeid) != "unit":
        return
    from yolo_tools import local_triton

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError(f"{request.node.nodeid} starts a tritonserver: give it tier 'triton' in conftest.TIERS")

    monkeypatch.setattr(local_triton.LocalTriton, "start", refuse)
