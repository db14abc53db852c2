# Helm chart, plain manifests, Karpenter and Dockerfile targets (issue 7). Included from the top-level Makefile.
CHART_PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
CHART_HELM = $(shell bash hack/cluster/build-tools.sh --print-env | sed -n 's/^GENJOB_HELM_BIN=//p')/helm

.PHONY: chart-crds chart-promql chart-manifests chart-lint chart-test

# `make test` fetches the CRD schemas and builds the PromQL parser the chart tests validate against.
test-deps: chart-crds chart-promql

chart-crds: ## fetch the pinned KEDA, Karpenter and Prometheus Operator CRDs (go mod download, cached)
	bash hack/crds/fetch-crds.sh

chart-promql: ## build promql-check (Prometheus v3.5.0's PromQL parser, hack/crds/promql; cached)
	bash hack/crds/promql-check.sh

chart-manifests: ## regenerate manifests/genjob.yaml from the chart (helm template of the defaults, ordered for kubectl)
	$(CHART_PYTHON) hack/plain_manifests.py $(CHART_HELM) > manifests/genjob.yaml.tmp
	mv manifests/genjob.yaml.tmp manifests/genjob.yaml
	@echo "manifests/genjob.yaml regenerated"

chart-lint: ## helm lint the chart with its defaults and every ci/*-values.yaml
	$(CHART_HELM) lint --strict charts/genjob
	@for f in charts/genjob/ci/*-values.yaml; do $(CHART_HELM) lint --strict charts/genjob -f $$f || exit 1; done

chart-test: chart-crds chart-promql ## chart tests: render/lint/schema (tests/chart) and install on the test cluster
	$(CHART_PYTHON) -m pytest tests/chart tests/cluster/test_cluster_chart_install.py
