#!/usr/bin/env bash
# Build a real Kubernetes control plane from Go modules (no Docker, no release downloads):
#   kube-apiserver, kube-controller-manager, kube-scheduler  (k8s.io/kubernetes, via a wrapper go.mod)
#   etcd 3.5                                                  (go.etcd.io/etcd/server/v3, via a wrapper go.mod)
#   kwok                                                      (sigs.k8s.io/kwok)
#   helm                                                      (helm.sh/helm/v3)
# and the parts of the real node (see node.py; YOLO_REAL_NODE=0 skips them):
#   kubelet, kube-proxy                                       (k8s.io/kubernetes, the same wrapper go.mod)
#   coredns 1.12 with only the plugins the cluster uses       (github.com/coredns/coredns, via a wrapper main)
#   the pause image and the yolo-echo test image              (static Go from images/, buildah from scratch, oci-archives)
#   the test object store: versitygw, an S3 gateway over a folder (github.com/versity/versitygw, from scratch)
#   KEDA's operator and metrics API server, and its CRDs        (github.com/kedacore/keda/v2, via a wrapper go.mod)
#   the OCI registry that releases are pushed to and the node pulls from (github.com/distribution/distribution/v3)
# node-deps.sh installs the node's Debian packages (containerd, runc, CNI plugins, buildah, prometheus) when they are missing.
#
# Binaries land in a per-version cache ($YOLO_K8S_CACHE, default ~/.cache/yolo-operator/k8s-<versions>;
# the node's in $YOLO_NODE_CACHE, default ~/.cache/yolo-operator/node-<versions>) and are linked into
# $BIN_DIR (default .bin, git-ignored). A second run finds them and returns at once.
# Set YOLO_K8S_BIN (or KUBEBUILDER_ASSETS) to a folder that already holds the binaries to skip building.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.33.13}
ETCD_VERSION=${ETCD_VERSION:-v3.5.35}
KWOK_VERSION=${KWOK_VERSION:-v0.7.0}
HELM_VERSION=${HELM_VERSION:-v3.19.0}
COREDNS_VERSION=${COREDNS_VERSION:-v1.12.4}
VERSITYGW_VERSION=${VERSITYGW_VERSION:-v1.8.0}
KEDA_VERSION=${KEDA_VERSION:-v2.16.1}
REGISTRY_VERSION=${REGISTRY_VERSION:-v3.1.2}
NETPOL_VERSION=${NETPOL_VERSION:-v0.8.0}
YOLO_REAL_NODE=${YOLO_REAL_NODE:-auto}  # auto: build the node when its packages are (or can be) installed; 1: must; 0: skip
BUILD_REV=2  # bump when the build flags change: a new cache key
NODE_REV=1   # the same for the node's parts

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN_DIR=${BIN_DIR:-$ROOT/.bin}
KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}_r${BUILD_REV}"
CACHE=${YOLO_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/yolo-operator/$KEY}
NODE_KEY="node-k8s-${K8S_VERSION}_coredns-${COREDNS_VERSION}_r${NODE_REV}"
NODE_CACHE=${YOLO_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/yolo-operator/$NODE_KEY}
KEDA_CACHE=${YOLO_KEDA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/yolo-operator/keda-$KEDA_VERSION}
REGISTRY_CACHE=${YOLO_REGISTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/yolo-operator/registry-${REGISTRY_VERSION}_r2}
NETPOL_CACHE=${YOLO_NETPOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/yolo-operator/netpol-${NETPOL_VERSION}_r1}
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler etcd kwok helm)
NODE_BINARIES=(kubelet kube-proxy coredns)

log() { printf '[build] %s\n' "$*" >&2; }

link_from() {  # link every binary from folder $1 into BIN_DIR
  mkdir -p "$BIN_DIR"
  for b in "${BINARIES[@]}"; do ln -sf "$1/$b" "$BIN_DIR/$b"; done
}

need_go() {
  command -v go >/dev/null || { echo "build.sh: Go is not installed; install Go >= 1.24 or set YOLO_K8S_BIN to prebuilt binaries" >&2; exit 1; }
  export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
}

minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
staging=v0.${K8S_VERSION#v1.}
build_date=2025-01-01T00:00:00Z  # fixed: reproducible builds
vpkg() {
  local p=$1
  printf -- '-X %s.gitVersion=%s -X %s.gitMajor=1 -X %s.gitMinor=%s -X %s.gitTreeState=clean -X %s.buildDate=%s ' \
    "$p" "$K8S_VERSION" "$p" "$p" "$minor" "$p" "$p" "$build_date"
}
LDFLAGS="-s -w $(vpkg k8s.io/component-base/version)$(vpkg k8s.io/client-go/pkg/version)"

k8s_wrapper() {  # a wrapper module in $1 that requires k8s.io/kubernetes and maps its staging modules to their tags
  local dir=$1
  [ -f "$dir/go.sum" ] && [ -f "$dir/tools.go" ] && return 0
  log "kubernetes $K8S_VERSION (staging modules at $staging)"
  mkdir -p "$dir"
  go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >"$dir/k8s-download.json"
  local gomod
  gomod=$(sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' "$dir/k8s-download.json")
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
  } >"$dir/go.mod"
  cat >"$dir/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
  (cd "$dir" && go mod tidy >/dev/null 2>&1 || go mod tidy)
}

control_plane() {
  local given b
  for given in "${YOLO_K8S_BIN:-}" "${KUBEBUILDER_ASSETS:-}"; do
    if [ -n "$given" ] && [ -x "$given/kube-apiserver" ] && [ -x "$given/etcd" ] && [ -x "$given/kwok" ] && [ -x "$given/helm" ]; then
      log "using binaries from $given"
      link_from "$given"
      return 0
    fi
  done
  local missing=0
  for b in "${BINARIES[@]}"; do [ -x "$CACHE/$b" ] || missing=1; done
  if [ $missing = 0 ]; then
    link_from "$CACHE"
    log "cached: $CACHE"
    return 0
  fi

  need_go
  local WORK=$CACHE/src start cmd
  mkdir -p "$WORK" "$CACHE"
  start=$(date +%s)

  if [ ! -x "$CACHE/kube-apiserver" ] || [ ! -x "$CACHE/kube-controller-manager" ] || [ ! -x "$CACHE/kube-scheduler" ]; then
    k8s_wrapper "$WORK/k8s"
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
}

# ----------------------------------------------------------------------------- the real node

IMAGES_SRC=$HERE/images
# The images' tag is a hash of their sources: a change gives new names, so no stale image is ever used.
IMAGE_TAG=$(cat "$IMAGES_SRC/go.mod" "$IMAGES_SRC"/*/main.go | sha256sum | cut -c1-12)

buildah_() { buildah --root "$NODE_CACHE/buildah/root" --runroot "$NODE_CACHE/buildah/run" --storage-driver vfs "$@"; }

oci_image() {  # oci_image NAME BINARY ENTRYPOINT_JSON OUT.tar: a from-scratch image holding one static binary
  local ref=$1 bin=$2 entry=$3 out=$4 c
  c=$(buildah_ from scratch)
  buildah_ copy "$c" "$bin" "/$(basename "$bin")" >/dev/null
  buildah_ config --entrypoint "$entry" "$c"
  buildah_ commit -q "$c" "$ref" >/dev/null
  rm -f "$out.tmp"
  buildah_ push -q "$ref" "oci-archive:$out.tmp:$ref"
  buildah_ rm "$c" >/dev/null
  buildah_ rmi "$ref" >/dev/null
  mv "$out.tmp" "$out"
}

node_images() {
  local dir=$NODE_CACHE/images/$IMAGE_TAG
  if [ ! -f "$dir/pause.oci.tar" ] || [ ! -f "$dir/echo.oci.tar" ]; then
    need_go
    log "pause and yolo-echo images ($IMAGE_TAG)"
    mkdir -p "$dir"
    (cd "$IMAGES_SRC" && go build -trimpath -ldflags "-s -w" -o "$dir/pause" ./pause && go build -trimpath -ldflags "-s -w" -o "$dir/yolo-echo" ./echo)
    oci_image "localhost/yolo-operator/pause:$IMAGE_TAG" "$dir/pause" '["/pause"]' "$dir/pause.oci.tar"
    oci_image "localhost/yolo-operator/echo:$IMAGE_TAG" "$dir/yolo-echo" '["/yolo-echo"]' "$dir/echo.oci.tar"
    rm -rf "$NODE_CACHE/buildah"
  fi
  mkdir -p "$BIN_DIR/node-images"
  for i in pause echo; do
    ln -sf "$dir/$i.oci.tar" "$BIN_DIR/node-images/$i.oci.tar"
    echo "localhost/yolo-operator/$i:$IMAGE_TAG" >"$BIN_DIR/node-images/$i.ref"
  done
}

store_image() {  # the S3-compatible store the pod tests fetch models from (k8s-tests/manifests/store.yaml)
  local dir=$NODE_CACHE/images/versitygw-$VERSITYGW_VERSION ref="localhost/yolo-operator/s3:$VERSITYGW_VERSION"
  if [ ! -f "$dir/s3.oci.tar" ]; then
    need_go
    log "versitygw $VERSITYGW_VERSION (S3 store image)"
    local start work=$NODE_CACHE/src/versitygw
    start=$(date +%s)
    mkdir -p "$dir" "$work"
    cat >"$work/go.mod" <<GOMOD
module yolo-operator/s3-build

go 1.25.0

require github.com/versity/versitygw $VERSITYGW_VERSION
GOMOD
    cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import _ "github.com/versity/versitygw/cmd/versitygw"
GO
    (cd "$work" && go mod tidy >/dev/null 2>&1 || go mod tidy)
    (cd "$work" && go build -trimpath -ldflags "-s -w" -o "$dir/versitygw" github.com/versity/versitygw/cmd/versitygw)
    oci_image "$ref" "$dir/versitygw" '["/versitygw"]' "$dir/s3.oci.tar"
    rm -rf "$NODE_CACHE/buildah"
    log "versitygw built in $(( $(date +%s) - start ))s"
  fi
  mkdir -p "$BIN_DIR/node-images"
  ln -sf "$dir/s3.oci.tar" "$BIN_DIR/node-images/s3.oci.tar"
  echo "$ref" >"$BIN_DIR/node-images/s3.ref"
}

keda() {  # KEDA's operator and metrics API server, and its CRDs (the autoscaling tests; k8s-tests/cluster/autoscale.py)
  if [ ! -x "$KEDA_CACHE/keda" ] || [ ! -x "$KEDA_CACHE/keda-adapter" ] || [ ! -d "$KEDA_CACHE/crds" ]; then
    need_go
    log "keda $KEDA_VERSION (operator and metrics adapter)"
    local start work=$KEDA_CACHE/src
    start=$(date +%s)
    mkdir -p "$work"
    cat >"$work/go.mod" <<GOMOD
module yolo-operator/keda-build

go 1.23.0

require github.com/kedacore/keda/v2 $KEDA_VERSION
GOMOD
    cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "github.com/kedacore/keda/v2/cmd/adapter"
	_ "github.com/kedacore/keda/v2/cmd/operator"
)
GO
    (cd "$work" && go mod tidy >/dev/null 2>&1 || go mod tidy)
    local kv="-X github.com/kedacore/keda/v2/version.Version=${KEDA_VERSION#v}"
    (cd "$work" && go build -trimpath -ldflags "-s -w $kv" -o "$KEDA_CACHE/keda.tmp" github.com/kedacore/keda/v2/cmd/operator)
    (cd "$work" && go build -trimpath -ldflags "-s -w $kv" -o "$KEDA_CACHE/keda-adapter.tmp" github.com/kedacore/keda/v2/cmd/adapter)
    rm -rf "$KEDA_CACHE/crds.tmp" && mkdir -p "$KEDA_CACHE/crds.tmp"
    cp "$(cd "$work" && go list -m -f '{{.Dir}}' github.com/kedacore/keda/v2)"/config/crd/bases/*.yaml "$KEDA_CACHE/crds.tmp/"
    chmod -R u+w "$KEDA_CACHE/crds.tmp"
    rm -rf "$KEDA_CACHE/crds" && mv "$KEDA_CACHE/crds.tmp" "$KEDA_CACHE/crds"
    mv "$KEDA_CACHE/keda.tmp" "$KEDA_CACHE/keda"
    mv "$KEDA_CACHE/keda-adapter.tmp" "$KEDA_CACHE/keda-adapter"
    log "keda built in $(( $(date +%s) - start ))s: $KEDA_CACHE"
  fi
  mkdir -p "$BIN_DIR"
  ln -sf "$KEDA_CACHE/keda" "$BIN_DIR/keda"
  ln -sf "$KEDA_CACHE/keda-adapter" "$BIN_DIR/keda-adapter"
  ln -sfn "$KEDA_CACHE/crds" "$BIN_DIR/keda-crds"
}

wrapper_build() {  # wrapper_build OUT MODULE VERSION GO LDFLAGS < main.go: one command from one Go module, through our own main
  # A generated module that requires MODULE@VERSION and a main.go read from stdin: the upstream
  # command's own main, with only what the cluster uses, or made to take a kubeconfig.
  local out=$1 module=$2 version=$3 go_version=$4 ldflags=$5 start work
  work=$(dirname "$out")/src
  need_go
  log "$module $version"
  start=$(date +%s)
  mkdir -p "$work"
  printf 'module yolo-operator/%s-build\n\ngo %s\n\nrequire %s %s\n' "$(basename "$out")" "$go_version" "$module" "$version" >"$work/go.mod"
  cat >"$work/main.go"
  (cd "$work" && go mod tidy >/dev/null 2>&1 || go mod tidy)
  (cd "$work" && go build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" .)
  mv "$out.tmp" "$out"
  log "$(basename "$out") built in $(( $(date +%s) - start ))s: $(dirname "$out")"
}

registry() {  # the cluster's OCI registry (cluster/registry.py): `make release` pushes, the node's containerd pulls
  # distribution's own `registry` command, built through a wrapper main with only the drivers the
  # cluster uses (filesystem, inmemory, htpasswd): about a minute cold on 2 cores, where the upstream
  # command, which links the Azure, GCS and S3 SDKs too, takes five.
  if [ ! -x "$REGISTRY_CACHE/registry" ]; then
    wrapper_build "$REGISTRY_CACHE/registry" github.com/distribution/distribution/v3 "$REGISTRY_VERSION" 1.23.0 \
      "-X github.com/distribution/distribution/v3/version.version=$REGISTRY_VERSION" <<'GO'
// The cluster's registry: distribution's own command with only the drivers the cluster uses.
package main

import (
	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

func main() {
	// nolint:errcheck
	registry.RootCmd.Execute()
}
GO
  fi
  mkdir -p "$BIN_DIR"
  ln -sf "$REGISTRY_CACHE/registry" "$BIN_DIR/registry"
}

netpol() {  # NetworkPolicy enforcement on the real node (cluster/netpol.py): kind's kube-network-policies
  # Its own controller (pkg/networkpolicy: informers, the policy evaluation, the nfqueue verdicts)
  # under a main that takes a kubeconfig, as the node's other host processes do; upstream's main
  # reads only the in-cluster config of its DaemonSet pod. About two minutes cold on 2 cores.
  if [ ! -x "$NETPOL_CACHE/kube-network-policies" ]; then
    wrapper_build "$NETPOL_CACHE/kube-network-policies" sigs.k8s.io/kube-network-policies "$NETPOL_VERSION" 1.23.0 "" <<'GO'
// kube-network-policies' controller for the local cluster's real node, configured by flags and a kubeconfig.
package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"sigs.k8s.io/kube-network-policies/pkg/networkpolicy"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "the kubeconfig of the engine's user")
	node := flag.String("hostname-override", "", "the node's name")
	queue := flag.Int("nfqueue-id", 100, "the nfqueue the node's rules send new connections to")
	failOpen := flag.Bool("fail-open", true, "let packets through while the engine is not reading the queue")
	klog.InitFlags(nil)
	flag.Parse()
	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		klog.Fatalf("kubeconfig: %v", err)
	}
	clientset, err := kubernetes.NewForConfig(config)
	if err != nil {
		klog.Fatalf("client: %v", err)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
	defer cancel()
	factory := informers.NewSharedInformerFactory(clientset, 0)
	// NRI stays on: with it off, v0.8.0 dereferences a nil plugin for a packet whose address is no
	// known pod's. Its stub fails to reach containerd 1.6 and the controller uses the API's pod IPs.
	cfg := networkpolicy.Config{FailOpen: *failOpen, QueueID: *queue, NodeName: *node, NetfilterBug1766Fix: false}
	controller, err := networkpolicy.NewController(
		clientset,
		factory.Networking().V1().NetworkPolicies(),
		factory.Core().V1().Namespaces(),
		factory.Core().V1().Pods(),
		nil, nil, nil, nil,
		cfg,
	)
	if err != nil {
		klog.Fatalf("controller: %v", err)
	}
	go func() {
		if err := controller.Run(ctx); err != nil {
			klog.Errorf("controller: %v", err)
			cancel()
		}
	}()
	factory.Start(ctx.Done())
	<-ctx.Done()
	time.Sleep(time.Second)
}
GO
  fi
  mkdir -p "$BIN_DIR"
  ln -sf "$NETPOL_CACHE/kube-network-policies" "$BIN_DIR/kube-network-policies"
}

node() {
  local b given
  for given in "${YOLO_K8S_BIN:-}" "${KUBEBUILDER_ASSETS:-}"; do
    if [ -n "$given" ] && [ -x "$given/kubelet" ] && [ -x "$given/kube-proxy" ] && [ -x "$given/coredns" ]; then
      for b in "${NODE_BINARIES[@]}"; do ln -sf "$given/$b" "$BIN_DIR/$b"; done
      node_images
      store_image
      keda
      registry
      netpol
      return 0
    fi
  done
  local start WORK=$NODE_CACHE/src cmd
  start=$(date +%s)
  mkdir -p "$NODE_CACHE"
  for cmd in kubelet kube-proxy; do
    if [ ! -x "$NODE_CACHE/$cmd" ]; then
      need_go
      k8s_wrapper "$WORK/k8s"
      log "go build $cmd"
      (cd "$WORK/k8s" && go build -trimpath -ldflags "$LDFLAGS" -o "$NODE_CACHE/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
      mv "$NODE_CACHE/$cmd.tmp" "$NODE_CACHE/$cmd"
    fi
  done
  if [ ! -x "$NODE_CACHE/coredns" ]; then
    need_go
    log "coredns $COREDNS_VERSION"
    mkdir -p "$WORK/coredns"
    cat >"$WORK/coredns/go.mod" <<GOMOD
module yolo-operator/coredns-build

go 1.24.0

require github.com/coredns/coredns $COREDNS_VERSION
GOMOD
    # CoreDNS's own main imports every plugin (cloud SDKs included); this one imports what the Corefile uses.
    cat >"$WORK/coredns/main.go" <<'GO'
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

// The order in which plugins handle a query, as in CoreDNS's plugin.cfg.
func init() {
	dnsserver.Directives = []string{"bind", "ready", "health", "errors", "log", "cache", "kubernetes"}
}

func main() { coremain.Run() }
GO
    (cd "$WORK/coredns" && go mod tidy >/dev/null 2>&1 || go mod tidy)
    (cd "$WORK/coredns" && go build -trimpath -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" -o "$NODE_CACHE/coredns.tmp" .)
    mv "$NODE_CACHE/coredns.tmp" "$NODE_CACHE/coredns"
  fi
  mkdir -p "$BIN_DIR"
  for b in "${NODE_BINARIES[@]}"; do ln -sf "$NODE_CACHE/$b" "$BIN_DIR/$b"; done
  node_images
  store_image
  keda
  registry
  netpol
  local took=$(( $(date +%s) - start ))
  [ $took -gt 2 ] && log "node built in ${took}s: $NODE_CACHE"
  return 0
}

trim_go_caches() {  # the binaries are cached above: Go's build and module caches only speed a rebuild
  # They take about 13 GB after the cold builds, and CI machines are sometimes short of disk (the
  # image builds need several GB free): below YOLO_MIN_FREE_GB (default 30) free, they go.
  command -v go >/dev/null || return 0
  local free_gb min=${YOLO_MIN_FREE_GB:-30} gocache modcache
  free_gb=$(df -Pk "$HOME" | awk 'NR==2 {print int($4 / 1048576)}')
  [ "$free_gb" -ge "$min" ] && return 0
  gocache=$(go env GOCACHE) modcache=$(go env GOMODCACHE)
  [ -d "$gocache" ] || [ -d "$modcache" ] || return 0
  log "${free_gb} GB free (< ${min}): removing Go's build and module caches ($(du -sh "$gocache" "$modcache" 2>/dev/null | awk '{print $1}' | paste -sd+))"
  go clean -cache -modcache >/dev/null 2>&1 || true
  log "$(df -Pk "$HOME" | awk 'NR==2 {print int($4 / 1048576)}') GB free"
}
trap trim_go_caches EXIT

control_plane
case "$YOLO_REAL_NODE" in
  0|false|no|off) exit 0 ;;
esac
if ! bash "$HERE/node-deps.sh"; then
  [ "$YOLO_REAL_NODE" = 1 ] && exit 1
  log "the real node is skipped: its packages are missing (YOLO_REAL_NODE=1 makes this an error)"
  exit 0
fi
# The node is optional unless YOLO_REAL_NODE=1: a failure here leaves the control plane usable.
set +e
(set -e; node)
rc=$?
set -e
if [ $rc != 0 ]; then
  [ "$YOLO_REAL_NODE" = 1 ] && exit $rc
  log "the real node's parts did not build (exit $rc); the cluster runs without it (YOLO_REAL_NODE=1 makes this an error)"
fi
exit 0
