#!/usr/bin/env bash
# Certificates signed per second on one core through the identity service's gRPC API (loopback TLS,
# token check cached), next to raw x509.CreateCertificate measured in the same run. Medians of 5 runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(go test -run='^$' -bench='^(BenchmarkCertifyGRPC|BenchmarkRawCreateCertificate)$' -cpu 1 -count 5 -benchtime=1s ./internal/identity/)
echo "$out" | grep -E '^Benchmark'
median() { # benchmark name -> median ns/op
  echo "$out" | awk -v b="$1" '$1 == b { print $3 }' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
grpc=$(median BenchmarkCertifyGRPC)
raw=$(median BenchmarkRawCreateCertificate)
awk -v g="$grpc" -v r="$raw" 'BEGIN {
  printf "median ns/op: gRPC Certify %d, raw CreateCertificate %d; gRPC reaches %.0f%% of raw\n", g, r, 100 * r / g
  printf "RESULT certs_per_sec=%.0f raw_per_sec=%.0f\n", 1e9 / g, 1e9 / r
}'
