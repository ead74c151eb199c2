#!/usr/bin/env bash
# skein-proxy against no proxy and against a reference pair of proxies (HAProxy, one thread each,
# mTLS between them), on a real mesh in network namespaces: latency at 200 and 2000 RPS, max RPS,
# CPU per 1000 RPS and memory. Medians of 3 runs; the last line is
#   RESULT rps_vs_reference=<x> p99_vs_reference=<x> p50_added_ms=<x> rss_mb=<x> cpu_m_per_krps=<x>
# Needs root. Installs what it runs that is missing (Debian packages). Flags go to the Go program:
#   test/bench/proxy.sh -reps 1 -fixed-duration 5s -v
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ $(id -u) != 0 ]]; then
  echo "bench-proxy must run as root: it creates network namespaces, links and iptables rules" >&2
  exit 1
fi
have() { command -v "$1" >/dev/null || [[ -x /usr/sbin/$1 || -x /sbin/$1 ]]; }
missing=()
have haproxy || missing+=(haproxy)
have nginx || missing+=(nginx)
have iptables-restore || missing+=(iptables)
{ have ip && have ss; } || missing+=(iproute2)
have setpriv || missing+=(util-linux)
if (( ${#missing[@]} )); then
  echo "bench-proxy: installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
exec go run ./test/bench/proxy "$@"
