#!/usr/bin/env bash
# Builds the local control plane (kube-apiserver, kube-controller-manager, etcd) from the pinned
# Go modules beside this script into OUT_DIR. Run once; `roost dev up` caches the result.
#   usage: build.sh OUT_DIR
set -euo pipefail
out=${1:?usage: build.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
kube_version=$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' "$here/kube/go.mod")
minor=$(echo "$kube_version" | cut -d. -f2)
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$out.partial"

ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done

echo "[1/2] building etcd (one-time; a few minutes)"
(cd "$here/etcd" && go build -trimpath -o "$out.partial/" go.etcd.io/etcd/server/v3)
mv "$out.partial/v3" "$out.partial/etcd" 2>/dev/null || true
[ -x "$out.partial/etcd" ] || mv "$out.partial/server" "$out.partial/etcd"

echo "[2/2] building kube-apiserver and kube-controller-manager $kube_version (one-time; 15-25 minutes on 2 cores)"
(cd "$here/kube" && go build -trimpath -tags selinux,notest -ldflags "$ldflags" -o "$out.partial/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager)

rm -rf "$out"
mv "$out.partial" "$out"
echo "control plane binaries ready in $out"
