#!/usr/bin/env bash
# Debian packages the real node needs: containerd + runc (the CRI runtime), the CNI plugins
# (bridge, host-local, portmap, loopback), buildah (builds the pause and test images from scratch)
# and prometheus (scrapes the pods for the autoscalers).
# Idempotent: returns at once when everything is installed. Needs root (apt-get) only when something is missing.
set -euo pipefail

missing=()
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/portmap ] && [ -x /usr/lib/cni/loopback ] || missing+=(containernetworking-plugins)
command -v buildah >/dev/null || missing+=(buildah)
command -v iptables >/dev/null || missing+=(iptables)
command -v conntrack >/dev/null || missing+=(conntrack)
command -v prometheus >/dev/null || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "node-deps.sh: missing ${missing[*]}; run as root (apt-get install -y ${missing[*]})" >&2
  exit 1
fi
echo "[node-deps] apt-get install ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends "${missing[@]}" >/tmp/yolo-node-deps.log 2>&1; then
  apt-get update >>/tmp/yolo-node-deps.log 2>&1
  apt-get install -y --no-install-recommends "${missing[@]}" >>/tmp/yolo-node-deps.log 2>&1 || { tail -20 /tmp/yolo-node-deps.log >&2; exit 1; }
fi
