#!/usr/bin/env bash
# test-digest.sh LOG: after a failed `go test ./...`, prints each failure's message again, short, so
# that it is at the end of the output, where CI's excerpt of a run is taken from.
#   Ginkgo specs: the spec's name and the "[FAILED] ..." message up to its "In [It] at:" line.
#   Plain tests: the "--- FAIL:" line and the test's indented output under it.
# Each message is cut at 12 lines.
set -euo pipefail
log=${1:?usage: test-digest.sh LOG}
echo "==== failures, again ===="
sed 's/\x1b\[[0-9;]*m//g' "$log" | awk '
	function flush() { if (n > 0) { for (i = 1; i <= n && i <= 12; i++) print buf[i]; if (n > 12) print "    ... (" n - 12 " more lines)"; n = 0 } }
	/^(• )?\[FAILED\] \[/ || /\[FAILED\] \[[0-9.]+ seconds\]/ { getline spec; title = spec; next }
	/^  \[FAILED\] / && !/\[FAILED\] in \[/ { flush(); ginkgo = 1; buf[++n] = "[" title "]"; buf[++n] = $0; next }
	ginkgo && /^  In \[/ { buf[++n] = $0; ginkgo = 0; flush(); next }
	ginkgo { buf[++n] = $0; next }
	/^ *--- FAIL: / { flush(); plain = 1; buf[++n] = $0; next }
	plain && /^    / { buf[++n] = $0; next }
	plain { plain = 0; flush() }
	/^panic: / { flush(); print; next }
	END { flush() }
'
