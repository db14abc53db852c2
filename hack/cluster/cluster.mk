# Cluster test tier targets (issue 4). Included from the top-level Makefile:
#   include hack/cluster/cluster.mk
# PYTHON may be set by the including Makefile; default to the project venv.
CLUSTER_PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
CLUSTER_STATE_DIR ?= .cluster

.PHONY: tools cluster-up cluster-down cluster-status

tools: ## build (or reuse from ~/.cache/genjob/tools) etcd, Kubernetes, kwok, helm, KEDA and Karpenter binaries
	bash hack/cluster/build-tools.sh

cluster-up: tools ## start a local control plane (AUTOSCALING=1: with KEDA and Karpenter); writes $(CLUSTER_STATE_DIR)/kubeconfig
	$(CLUSTER_PYTHON) hack/cluster/harness.py --state-dir $(CLUSTER_STATE_DIR) up $(if $(AUTOSCALING),--autoscaling,)

cluster-down: ## stop the control plane started by cluster-up
	$(CLUSTER_PYTHON) hack/cluster/harness.py --state-dir $(CLUSTER_STATE_DIR) down

cluster-status: ## show which control-plane processes are running
	$(CLUSTER_PYTHON) hack/cluster/harness.py --state-dir $(CLUSTER_STATE_DIR) status

.PHONY: cluster-demo
cluster-demo: venv redis-server tools ## the Kubernetes path locally: control plane + KEDA + Karpenter, helm install, a GenerationJob narrated to Succeeded and back to zero
	$(PY) hack/cluster/demo.py $(DEMO_ARGS)
