#!/usr/bin/env bash
# Builds the real kube-apiserver, etcd and kubectl that envtest, the tests and the demo run, from their Go
# modules at the versions pinned in hack/tools/go.mod, into bin/k8s/<version>/. A binary already there with
# a stamp for the same version is reused: kube-apiserver takes about 15 minutes on a cold cache on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/tools"
k8s_version=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
etcd_version=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
out=${1:-../../bin/k8s/$k8s_version}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Stamp the Kubernetes version in as its own release build does, so /version and `kubectl version` tell the truth.
minor=${k8s_version#v1.}; minor=${minor%%.*}
k8s_ldflags=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $p.gitVersion=$k8s_version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done

build() { # name version package [ldflags]
  local name=$1 version=$2 pkg=$3 ldflags=${4:-} stamp="$out/.$1.version"
  if [[ -x $out/$name && -f $stamp && $(cat "$stamp") == "$version" ]]; then
    echo "test-bins: reusing $out/$name ($version)"
    return
  fi
  echo "test-bins: building $name $version from its Go module into $out (not found there at that version)"
  [[ $name == kube-apiserver ]] && echo "test-bins: kube-apiserver takes about 15 minutes on a cold cache on 2 cores"
  local start=$SECONDS
  CGO_ENABLED=0 go build -trimpath -ldflags="-s $ldflags" -o "$out/$name.tmp" "$pkg"
  mv "$out/$name.tmp" "$out/$name"
  echo "$version" >"$stamp"
  echo "test-bins: built $name in $((SECONDS - start))s"
}

build etcd "$etcd_version" ./etcd
build kubectl "$k8s_version" k8s.io/kubernetes/cmd/kubectl "$k8s_ldflags"
build kube-apiserver "$k8s_version" k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
