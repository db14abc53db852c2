# The local quickstart: one command from a fresh checkout to a PNG made through the full local
# flow (gateway -> Redis -> worker -> result store), with no cluster and no GPU.
# Included by the top-level Makefile, which provides the `venv` and `redis-server` targets
# (a virtual environment with every locked dependency, re-installed when pyproject.toml or requirements.lock
# changes; redis-server from apt when missing).

QUICKSTART_PROMPT ?= a red fox in the snow
QUICKSTART_OUT ?= out/fox.png

.PHONY: quickstart
quickstart: venv redis-server ## set everything up, then generate $(QUICKSTART_OUT) from a prompt through gateway, Redis and a worker
	@echo "==> local flow: Redis, the tiny model (built once into .genjob/models/tiny), the gateway and one worker"
	$(VENV)/bin/genjob demo "$(QUICKSTART_PROMPT)" -o $(QUICKSTART_OUT)

.PHONY: up
up: venv redis-server ## run the local stack in the foreground (gateway on :8000, WORKERS=1); Ctrl-C stops it
	$(VENV)/bin/genjob up --workers $(or $(WORKERS),1)
