# Skein's build. `make demo` runs a real local mesh; `make test` runs every test against real components.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

# The Kubernetes version the tests and the demo run: kube-apiserver, etcd and kubectl are built from
# their Go modules (pinned in hack/tools/go.mod) into bin/k8s/$(K8S_VERSION).
K8S_VERSION := $(shell awk '$$1 == "k8s.io/kubernetes" && $$2 ~ /^v/ { print $$2 }' hack/tools/go.mod)
K8S_BIN := $(CURDIR)/bin/k8s/$(K8S_VERSION)
export KUBEBUILDER_ASSETS := $(K8S_BIN)

CONTROLLER_GEN := go tool controller-gen
GO_TEST_FLAGS ?= -count=1 -timeout 30m

.PHONY: all
all: build

##@ Development

.PHONY: manifests
manifests: ## Generate the CRDs, RBAC and webhook manifests under config/.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd webhook paths="./..." output:crd:artifacts:config=config/crd/bases

.PHONY: generate
generate: ## Generate the deepcopy methods of the API types and the Grafana dashboard (internal/grafana).
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./..."
	go run ./hack/dashboard config/grafana/skein-dashboard.json

.PHONY: bundle
bundle: test-bins ## Generate the OLM bundle (bundle/) from config/: the CSV, the CRDs, the metadata and bundle.Dockerfile.
	go run ./hack/bundle -kubectl $(K8S_BIN)/kubectl -out bundle

.PHONY: fmt
fmt: ## Format the Go code.
	go fmt ./...

.PHONY: vet
vet: ## Vet the Go code and check its formatting.
	go vet ./...
	@unformatted=$$(gofmt -l $$(find . -name '*.go' -not -path './bin/*')); \
	  if [[ -n $$unformatted ]]; then echo "gofmt needed on: $$unformatted"; exit 1; fi

.PHONY: test-bins
test-bins: ## Build kube-apiserver, etcd and kubectl into bin/k8s/<version>, reusing what is there.
	hack/build-test-bins.sh $(K8S_BIN)

.PHONY: test-deps
test-deps: ## Install the Debian packages the tests use (iptables, iproute2, util-linux's setpriv, prometheus) that are missing.
	@missing=(); \
	  command -v iptables-restore >/dev/null || [[ -x /usr/sbin/iptables-restore ]] || missing+=(iptables); \
	  command -v ip >/dev/null || [[ -x /usr/sbin/ip ]] || [[ -x /sbin/ip ]] || missing+=(iproute2); \
	  command -v setpriv >/dev/null || missing+=(util-linux); \
	  [[ -x /usr/bin/prometheus ]] || missing+=(prometheus); \
	  if (( $${#missing[@]} )); then \
	    echo "Installing $${missing[*]}"; apt-get update -qq && apt-get install -y -qq "$${missing[@]}"; \
	  fi

.PHONY: test
test: test-deps test-bins vet ## Run every test against the real API server, then the fuzz targets briefly.
	@mkdir -p bin
	go test $(GO_TEST_FLAGS) ./... 2>&1 | tee bin/test.log || { hack/test-digest.sh bin/test.log; exit 1; }
	$(MAKE) fuzz

# Budgets are execution counts, not durations: Go 1.26's fuzz coordinator can fail a
# duration run with "context deadline exceeded" when the deadline races a busy worker
# (golang/go#75804). Each count is a few seconds of fuzzing on one of our machines.
FUZZ_CERTIFY ?= 2000x
FUZZ_CLASSIFY ?= 500000x
FUZZ_OUTBOUND ?= 10000x
FUZZ_XDS ?= 100000x
FUZZ_HTTP1 ?= 200000x
FUZZ_APP ?= 100000x
.PHONY: fuzz
fuzz: ## Run each fuzz target for a few seconds' worth of executions.
	go test -run='^$$' -fuzz='^FuzzCertify$$' -fuzztime=$(FUZZ_CERTIFY) ./internal/identity/
	go test -run='^$$' -fuzz='^FuzzClassify$$' -fuzztime=$(FUZZ_CLASSIFY) ./proxy/detect/
	go test -run='^$$' -fuzz='^FuzzOutbound$$' -fuzztime=$(FUZZ_OUTBOUND) ./proxy/outbound/
	go test -run='^$$' -fuzz='^FuzzDecode$$' -fuzztime=$(FUZZ_XDS) ./proxy/xdsclient/
	go test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZ_HTTP1) ./proxy/http1/
	go test -run='^$$' -fuzz='^FuzzLeanResponse$$' -fuzztime=$(FUZZ_APP) ./proxy/inbound/

##@ Benchmarks

.PHONY: bench-identity
bench-identity: ## Certificates signed per second per core through the identity service, against raw signing.
	test/bench/identity.sh

.PHONY: bench-proxy
bench-proxy: test-bins ## skein-proxy's latency, max RPS, CPU and memory against no proxy and two HAProxy with mTLS (root).
	test/bench/proxy.sh

.PHONY: bench-xds
bench-xds: test-bins ## 1,000 delta-ADS clients on one control plane: TrafficSplit change to every ACK (p50/p99), heap per client.
	go run ./test/bench/xds $(BENCH_XDS_FLAGS)

##@ Build

.PHONY: build
build: ## Build the control plane and the CLI into bin/.
	go build -o bin/skein-controller .
	go build -o bin/skein ./cmd/skein

.PHONY: images
images: ## Build the skein-controller and skein-proxy images as OCI archives in bin/images/, without a Docker daemon.
	go run ./hack/images -out bin/images

.PHONY: run
run: ## Run the control plane against the cluster in the current kubeconfig.
	go run . --metrics-bind-address=0

.PHONY: demo
demo: test-bins build ## Run a real local mesh: API server, control plane, samples, and what they show.
	bin/skein demo --assets-dir $(K8S_BIN) --controller bin/skein-controller --dir bin/demo

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-12s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Deployment

# The kubectl that deploys: the one built into bin/ when there, else the one on PATH.
KUBECTL ?= $(shell [[ -x $(K8S_BIN)/kubectl ]] && echo $(K8S_BIN)/kubectl || echo kubectl)

.PHONY: deploy
deploy: ## Install Skein (CRDs, RBAC, control plane, webhooks) into the cluster of the current kubeconfig; cert-manager must be there.
	$(KUBECTL) apply --server-side -k config/default

.PHONY: undeploy
undeploy: ## Remove what make deploy installed, CRDs (and so every Skein object) included.
	$(KUBECTL) delete -k config/default --ignore-not-found --wait=false

##@ Protocols

.PHONY: proto
proto: ## Generate the Go code for the gRPC protocols under internal/ (needs protoc: apt-get install protobuf-compiler).
	@command -v protoc >/dev/null || { echo "protoc not found: installing Debian's protobuf-compiler"; apt-get update -qq && apt-get install -y -qq protobuf-compiler; }
	for f in $$(find internal -name '*.proto'); do \
	  protoc --plugin=protoc-gen-go=$$(go tool -n protoc-gen-go) --plugin=protoc-gen-go-grpc=$$(go tool -n protoc-gen-go-grpc) \
	    --go_out=paths=source_relative:. --go-grpc_out=paths=source_relative:. $$f; \
	done
