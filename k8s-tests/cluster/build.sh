#!/usr/bin/env bash
# Build a real Kubernetes control plane from Go modules (no Docker, no release downloads):
#   kube-apiserver, kube-controller-manager, kube-scheduler  (k8s.io/kubernetes, via a wrapper go.mod)
#   etcd 3.5                                                  (go.etcd.io/etcd/server/v3, via a wrapper go.mod)
#   kwok                                                      (sigs.k8s.io/kwok)
#   helm                                                      (helm.sh/helm/v3)
#
# Binaries land in a per-version cache ($YOLO_K8S_CACHE, default ~/.cache/yolo-operator/k8s-<versions>)
# and are linked into $BIN_DIR (default .bin, git-ignored). A second run finds them and returns at once.
# Set YOLO_K8S_BIN (or KUBEBUILDER_ASSETS) to a folder that already holds the binaries to skip building.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.33.13}
ETCD_VERSION=${ETCD_VERSION:-v3.5.35}
KWOK_VERSION=${KWOK_VERSION:-v0.7.0}
HELM_VERSION=${HELM_VERSION:-v3.19.0}
BUILD_REV=2  # bump when the build flags change: a new cache key

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN_DIR=${BIN_DIR:-$ROOT/.bin}
KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}_r${BUILD_REV}"
CACHE=${YOLO_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/yolo-operator/$KEY}
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler etcd kwok helm)

log() { printf '[build] %s\n' "$*" >&2; }

link_from() {  # link every binary from folder $1 into BIN_DIR
  mkdir -p "$BIN_DIR"
  for b in "${BINARIES[@]}"; do ln -sf "$1/$b" "$BIN_DIR/$b"; done
}

for given in "${YOLO_K8S_BIN:-}" "${KUBEBUILDER_ASSETS:-}"; do
  if [ -n "$given" ] && [ -x "$given/kube-apiserver" ] && [ -x "$given/etcd" ] && [ -x "$given/kwok" ] && [ -x "$given/helm" ]; then
    log "using binaries from $given"
    link_from "$given"
    exit 0
  fi
done

have_all() { for b in "${BINARIES[@]}"; do [ -x "$CACHE/$b" ] || return 1; done; }
if have_all; then
  link_from "$CACHE"
  log "cached: $CACHE"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: Go is not installed; install Go >= 1.24 or set YOLO_K8S_BIN to prebuilt binaries" >&2; exit 1; }
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
WORK=$CACHE/src
mkdir -p "$WORK" "$CACHE"
start=$(date +%s)

minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
staging=v0.${K8S_VERSION#v1.}
build_date=2025-01-01T00:00:00Z  # fixed: reproducible builds
vpkg() {
  local p=$1
  printf -- '-X %s.gitVersion=%s -X %s.gitMajor=1 -X %s.gitMinor=%s -X %s.gitTreeState=clean -X %s.buildDate=%s ' \
    "$p" "$K8S_VERSION" "$p" "$p" "$minor" "$p" "$p" "$build_date"
}
LDFLAGS="-s -w $(vpkg k8s.io/component-base/version)$(vpkg k8s.io/client-go/pkg/version)"

if [ ! -x "$CACHE/kube-apiserver" ] || [ ! -x "$CACHE/kube-controller-manager" ] || [ ! -x "$CACHE/kube-scheduler" ]; then
  log "kubernetes $K8S_VERSION (staging modules at $staging)"
  mkdir -p "$WORK/k8s"
  go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >"$WORK/k8s-download.json"
  gomod=$(sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' "$WORK/k8s-download.json")
  {
    echo "module yolo-operator/k8s-build"
    echo
    grep -E '^go ' "$gomod"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging"'#p' "$gomod"
    echo ")"
  } >"$WORK/k8s/go.mod"
  cat >"$WORK/k8s/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
GO
  (cd "$WORK/k8s" && go mod tidy >/dev/null 2>&1 || go mod tidy)
  for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
    log "go build $cmd"
    (cd "$WORK/k8s" && go build -trimpath -ldflags "$LDFLAGS" -o "$CACHE/$cmd" "k8s.io/kubernetes/cmd/$cmd")
  done
fi

if [ ! -x "$CACHE/etcd" ]; then
  log "etcd $ETCD_VERSION"
  mkdir -p "$WORK/etcd"
  cat >"$WORK/etcd/go.mod" <<GOMOD
module yolo-operator/etcd-build

go 1.23

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
  cat >"$WORK/etcd/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  (cd "$WORK/etcd" && go mod tidy >/dev/null 2>&1 || go mod tidy)
  (cd "$WORK/etcd" && go build -trimpath -ldflags "-s -w" -o "$CACHE/etcd" go.etcd.io/etcd/server/v3)
fi

if [ ! -x "$CACHE/kwok" ]; then
  log "kwok $KWOK_VERSION"
  GOBIN="$CACHE" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
fi

if [ ! -x "$CACHE/helm" ]; then
  log "helm $HELM_VERSION"
  # As Helm's Makefile does: its version, and the Kubernetes version `helm template`/`lint` assume
  # (otherwise v1.20, which fails the chart's kubeVersion).
  GOBIN="$CACHE" go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
    -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi

link_from "$CACHE"
log "built in $(( $(date +%s) - start ))s: $CACHE"
