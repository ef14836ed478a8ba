"""`make release`'s refusals and the chart values it publishes (no registry needed; the push itself
is tested against the local cluster's registry in k8s-tests/test_release.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml

from yolo_tools import release as rel

VALUES = (rel.CHART / "values.yaml").read_text()


def test_the_released_values_point_every_image_at_the_registry_and_keep_the_comments() -> None:
    r = rel.Release("0.1.0", "localhost:15000")
    out = rel.release_values(VALUES, r)
    parsed, original = yaml.safe_load(out), yaml.safe_load(VALUES)
    assert parsed["image"]["repository"] == "localhost:15000/yolo-operator/operator"
    assert parsed["image"]["tag"] == ""  # the images follow appVersion
    parsed["image"]["repository"] = original["image"]["repository"]
    assert parsed == original  # nothing else changed
    assert out.count("\n") == VALUES.count("\n") and "# -- Operator image repository." in out


def test_the_released_chart_renders_the_registry_images_at_the_chart_version(tmp_path) -> None:
    helm = rel.ROOT / ".bin" / "helm"
    if not helm.exists():
        pytest.fail("no .bin/helm: run `make cluster-build`", pytrace=False)
    r = rel.Release(rel.version_file(), "registry.example:5000/team")
    chart = tmp_path / "yolo-operator"
    shutil.copytree(rel.CHART, chart)
    (chart / "values.yaml").write_text(rel.release_values(VALUES, r))
    out = subprocess.run([str(helm), "template", "x", str(chart)], text=True, capture_output=True, check=True).stdout
    images = {line.split("image:", 1)[1].strip().strip('"') for line in out.splitlines() if "image:" in line}
    assert f"registry.example:5000/team/yolo-operator/operator:{r.version}" in images
    # the operator hands the other project images to YoloServices: they follow the same registry and tag
    for name in ("gateway", "triton-cpu", "model-fetcher"):
        assert f"registry.example:5000/team/yolo-operator/{name}:{r.version}" in out


def test_a_release_refuses_a_version_other_than_the_version_file() -> None:
    with pytest.raises(rel.ReleaseError, match="make version"):
        rel.check("9.9.9", "localhost:15000")
    assert rel.check(None, "localhost:15000") == rel.version_file()


@pytest.mark.parametrize("registry", ["http://localhost:15000", "", "ghcr.io/team/"])
def test_a_release_refuses_a_registry_with_a_scheme_or_trailing_slash(registry: str) -> None:
    with pytest.raises(rel.ReleaseError, match="host"):
        rel.check(None, registry)


def test_a_release_refuses_a_pinned_image_tag() -> None:
    pinned = VALUES.replace('  tag: ""', '  tag: "1.2.3"', 1)
    with pytest.raises(rel.ReleaseError, match="appVersion"):
        rel.release_values(pinned, rel.Release("0.1.0", "r:1"))


def test_the_image_references_of_a_release() -> None:
    r = rel.Release("1.4.0", "ghcr.io/acme")
    assert r.image("gateway") == "ghcr.io/acme/yolo-operator/gateway:1.4.0"
    assert r.chart_ref == "oci://ghcr.io/acme/charts/yolo-operator"


def test_the_auth_file_is_a_docker_config_for_the_registry_host(tmp_path) -> None:
    import base64
    import json
    import stat

    path = rel.write_authfile("localhost:15000", "yolo", "s3cret", tmp_path / "auth.json")
    auths = json.loads(path.read_text())["auths"]
    assert base64.b64decode(auths["localhost:15000"]["auth"]) == b"yolo:s3cret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _cluster_registry():
    """k8s-tests/cluster/registry.py: the package `cluster` (k8s-tests/cluster), loaded by path where
    the k8s-tests conftest has not imported it yet (the tools package cannot import it)."""
    import importlib.util

    if "cluster" not in sys.modules:
        package = rel.ROOT / "k8s-tests" / "cluster"
        spec = importlib.util.spec_from_file_location(
            "cluster", package / "__init__.py", submodule_search_locations=[str(package)]
        )
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules["cluster"] = module
        spec.loader.exec_module(module)
    return sys.modules["cluster"].registry


def test_the_default_registry_is_the_local_clusters() -> None:
    assert _cluster_registry().REGISTRY == rel.LOCAL_REGISTRY


def test_the_registry_copy_for_pods_listens_on_the_real_nodes_ip() -> None:
    text = (rel.ROOT / "k8s-tests" / "cluster" / "realnode.py").read_text()
    assert f'NODE_IP = "{_cluster_registry().NODE_IP}"' in text


def test_release_reads_the_credentials_the_cluster_registry_writes(monkeypatch, tmp_path) -> None:
    mod = _cluster_registry()
    (tmp_path / "registry").mkdir()
    (tmp_path / "registry" / "credentials.json").write_text('{"username": "yolo", "password": "p4ss"}')
    monkeypatch.setenv("YOLO_CLUSTER_DIR", str(tmp_path))
    assert rel.local_credentials(rel.LOCAL_REGISTRY) == mod.credentials(tmp_path) == ("yolo", "p4ss")
    assert rel.local_credentials("ghcr.io/acme") is None


def test_a_release_without_a_version_is_refused(monkeypatch, tmp_path) -> None:
    empty = tmp_path / "VERSION"
    empty.write_text("\n")
    monkeypatch.setattr(rel, "ROOT", tmp_path)
    with pytest.raises(rel.ReleaseError, match="SemVer"):
        rel.check(None, "localhost:15000")


def test_make_version_stamps_the_new_version_into_the_chart(tmp_path) -> None:
    """`make version V=x.y.z` in one call: VERSION and both chart fields say x.y.z."""
    (tmp_path / "charts" / "yolo-operator").mkdir(parents=True)
    shutil.copy(rel.ROOT / "Makefile", tmp_path / "Makefile")
    shutil.copy(rel.ROOT / "VERSION", tmp_path / "VERSION")
    shutil.copy(rel.CHART / "Chart.yaml", tmp_path / "charts" / "yolo-operator" / "Chart.yaml")
    subprocess.run(["make", "-s", "-C", str(tmp_path), "version", "V=7.8.9-rc.1"], check=True, capture_output=True)
    chart = yaml.safe_load((tmp_path / "charts" / "yolo-operator" / "Chart.yaml").read_text())
    assert (tmp_path / "VERSION").read_text().strip() == "7.8.9-rc.1"
    assert (chart["version"], chart["appVersion"]) == ("7.8.9-rc.1", "7.8.9-rc.1")


def _build_images(monkeypatch, state):
    """docker/build-images.py, loaded afresh with the cluster's state in `state`; the module loaded
    before (if any) is put back afterwards."""
    monkeypatch.setenv("YOLO_CLUSTER_DIR", str(state))
    monkeypatch.setitem(sys.modules, "build_images", None)
    return rel.build_images_module(fresh=True)


def test_make_images_pushes_to_the_local_clusters_registry_with_its_credentials(monkeypatch, tmp_path) -> None:
    mod = _build_images(monkeypatch, tmp_path)
    assert mod.REGISTRY == _cluster_registry().REGISTRY == rel.LOCAL_REGISTRY
    assert mod.registry_credentials() is None  # no cluster: `make images` builds and does not push
    (tmp_path / "registry").mkdir()
    (tmp_path / "registry" / "credentials.json").write_text('{"username": "yolo", "password": "p4ss"}')
    assert mod.registry_credentials() == _cluster_registry().credentials(tmp_path) == ("yolo", "p4ss")
    assert tmp_path / "registry" / "dev-images.json" == mod.DEV_IMAGES


def test_make_images_takes_the_flags_the_previous_release_builder_passes(monkeypatch, tmp_path) -> None:
    """yolo_tools.previous builds an older release with its own build-images.py and these flags; once
    this version is the previous one, its script must accept them and push nothing as dev images."""
    from yolo_tools import previous

    mod = _build_images(monkeypatch, tmp_path)
    assert mod.parse_args(list(previous.BUILD_FLAGS)).push is False
    assert mod.parse_args([]).push is None and mod.parse_args(["--no-push"]).push is False


def test_the_dev_images_share_one_tag_that_changes_with_any_image(monkeypatch, tmp_path) -> None:
    mod = _build_images(monkeypatch, tmp_path)
    ids = {"operator": "a1", "gateway": "b2", "model-fetcher": "c3", "triton-cpu": "d4"}
    tag = mod.dev_tag(ids)
    assert tag.startswith("dev-") and len(tag) == len("dev-") + 12 and tag == mod.dev_tag(dict(reversed(ids.items())))
    assert mod.dev_tag({**ids, "gateway": "b3"}) != tag


def test_the_release_and_the_image_build_agree_on_platforms_and_their_local_tags(monkeypatch, tmp_path) -> None:
    """`make release PLATFORMS=...` builds with docker/build-images.py and pushes with yolo_tools.release:
    the same platform names, and the same local tag for each (the host's plain, another -<arch>)."""
    mod = _build_images(monkeypatch, tmp_path)
    native = rel.native_platform()
    assert mod.native_platform().name == native
    for name in mod.PLATFORMS:
        img = next(i for i in mod.images() if i.name == "gateway")
        assert img.ref_for(mod.PLATFORMS[name]) == rel.local_ref("gateway", mod.TAG, name)
    assert rel.local_ref("gateway", "dev", native) == "localhost/yolo-operator/gateway:dev"
    assert [p.name for p in mod.parse_platforms("arm64, linux/amd64,arm64")] == rel.parse_platforms(
        "arm64, linux/amd64,arm64"
    )
    assert rel.parse_platforms("linux/arm64,linux/amd64")[0] == native  # the host's first
    assert rel.parse_platforms(None) == [native]


@pytest.mark.parametrize("bad", ["linux/s390x", "windows/amd64", ",", "riscv64"])
def test_an_unknown_platform_is_refused_before_anything_is_built_or_pushed(monkeypatch, tmp_path, bad) -> None:
    mod = _build_images(monkeypatch, tmp_path)
    with pytest.raises(SystemExit, match="platform"):
        mod.parse_platforms(bad)
    with pytest.raises(rel.ReleaseError, match="platform"):
        rel.parse_platforms(bad)


def test_the_host_platforms_wheelhouses_keep_their_cache_keys_and_a_foreign_ones_differ(monkeypatch, tmp_path) -> None:
    mod = _build_images(monkeypatch, tmp_path)
    ws = mod.WheelSet("x", ["numpy"], [])
    amd64, arm64 = mod.PLATFORMS["linux/amd64"], mod.PLATFORMS["linux/arm64"]
    import hashlib
    import json

    old = json.dumps([sys.version_info[:2], "linux_x86_64", ["numpy"], []])  # the key before platforms
    assert ws.key(amd64) == "x-" + hashlib.sha256(old.encode()).hexdigest()[:12]
    assert ws.key(arm64) != ws.key(amd64)
    tags = arm64.pip_platforms()
    assert "manylinux_2_35_aarch64" in tags and "manylinux2014_aarch64" in tags  # nvidia-pytriton's, grpcio's
    assert not any("2_37" in t or "x86_64" in t for t in tags)  # bookworm's glibc is 2.36


def test_a_release_of_platforms_not_built_is_refused_before_anything_is_pushed(monkeypatch) -> None:
    native = rel.native_platform()
    foreign = next(p for p in rel.build_images_module().PLATFORMS if p != native)
    arch = foreign.split("/")[1]
    pushed: list[list[str]] = []
    monkeypatch.setattr(rel, "image_exists", lambda ref: not ref.endswith(f"-{arch}"))  # the foreign build is missing
    monkeypatch.setattr(rel, "run", lambda cmd, **kw: pushed.append(cmd))
    release = rel.Release("1.2.3", "registry.example:5000")
    with pytest.raises(rel.ReleaseError, match=rf"not built: .*gateway:dev-{arch}.*--platform {native},{foreign}"):
        rel.push_images(release, "dev", [native, foreign])
    assert pushed == []


TRIXIE_CONF = (
    r":qemu-aarch64:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:"
    r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:"
    "/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF\n"
)


def test_emulation_registers_its_own_qemu_with_the_package_magic_and_the_fix_binary_flag(monkeypatch, tmp_path) -> None:
    mod = _build_images(monkeypatch, tmp_path)
    line = mod.binfmt_line(TRIXIE_CONF, tmp_path / "qemu-aarch64")
    fields = line.split(":")
    assert fields[:6] == TRIXIE_CONF.strip().split(":")[:6]  # the package's magic and mask, unchanged
    assert fields[6] == str(tmp_path / "qemu-aarch64") and set(fields[7]) == set("OPF")
    assert mod.binfmt_line(TRIXIE_CONF.replace(":OPF", ":P"), tmp_path / "q").endswith(":FP")
    with pytest.raises(ValueError, match="binfmt_misc"):
        mod.binfmt_line("qemu-aarch64 magic", tmp_path / "q")


@pytest.mark.parametrize(
    ("says", "version"),
    [
        ("qemu-aarch64 version 7.2.17 (Debian 1:7.2+dfsg-7+deb12u18)", (7, 2)),
        ("qemu-aarch64 version 10.0.13 (Debian 1:10.0.13+ds-0+deb13u1)\nCopyright (c) 2003-2025", (10, 0)),
        ("qemu: has to be run using kernel binfmt-misc subsystem", None),
    ],
)
def test_the_qemu_version_is_read_from_the_binary_and_7_2_is_too_old(monkeypatch, tmp_path, says, version) -> None:
    """qemu 7.2 (bookworm) shows aarch64 programs the host's /proc/cpuinfo, and onnxruntime then
    segfaults on import: emulation replaces a registration older than QEMU_MIN."""
    mod = _build_images(monkeypatch, tmp_path)
    fake = tmp_path / "qemu"
    fake.write_text(f"#!/bin/sh\ncat <<'END'\n{says}\nEND\n")
    fake.chmod(0o755)
    assert mod.qemu_version(str(fake)) == version
    assert mod.qemu_version(str(tmp_path / "missing")) is None
    assert (version is not None and version >= mod.QEMU_MIN) == (version == (10, 0))
