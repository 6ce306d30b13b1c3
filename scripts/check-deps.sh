#!/usr/bin/env bash
# Checks that the production binaries (cmd/durio and the persister plugins)
# link no test code: no package they depend on may import "testing", except
# github.com/hashicorp/go-plugin, whose testing.go (test helpers in a non-test
# file) imports it; of package testing only its init is linked then, no test
# code. Our own test helpers live in separate packages (persisttest,
# plugin/plugintest, rafttest, kvtest) for this reason.
set -euo pipefail
cd "$(dirname "$0")/.."
allowed='^github.com/hashicorp/go-plugin$'
bad=$(go list -deps -f '{{$p := .ImportPath}}{{range .Imports}}{{if eq . "testing"}}{{$p}}{{"\n"}}{{end}}{{end}}' \
  ./cmd/durio ./plugins/... | sort -u | grep -v -E "$allowed" || true)
if [ -n "$bad" ]; then
  echo "production binaries import package testing through:"; echo "$bad"; exit 1
fi
echo "no test code in the production binaries"
