# Backup operations toolkit. The two commands of the README:
#   make demo   set up this machine, build the lab, run the Seafile backup-server playbook
#   make test   everything CI runs (.ci/run calls exactly this)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
ENV := . scripts/env.sh &&
# Each pytest run gets its own temp root: concurrent runs sharing /tmp/pytest-of-root prune each
# other's directories (pytest keeps only the newest three).
PYTEST := $(ENV) export PYTEST_DEBUG_TEMPROOT=$$(mktemp -d /tmp/bt-pytest.XXXXXX) && python -m pytest -p no:cacheprovider
SCENARIOS ?= $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))
PLAYBOOKS := $(wildcard playbooks/*.yml)
MODULES := $(basename $(notdir $(wildcard library/*.py)))

.PHONY: setup lab-image demo demo-clean test lint syntax docs unit integration molecule bench

setup:
	bash scripts/setup.sh

lab-image: setup
	bash scripts/lab/build-image.sh

demo: lab-image
	bash scripts/lab/demo.sh

demo-clean:
	bash scripts/lab/demo.sh --destroy

test: setup lint syntax unit integration molecule
	@echo "make test: all stages passed"

lint: setup
	$(ENV) ruff check library plugins tests bench
	$(ENV) yamllint -s .
	$(ENV) ansible-lint --profile production -q

syntax: setup
	$(ENV) for p in $(PLAYBOOKS); do ansible-playbook --syntax-check -i inventories/example/hosts.yml "$$p" >/dev/null || exit 1; done; echo "syntax: $(words $(PLAYBOOKS)) playbooks ok"
	$(ENV) for m in $(MODULES); do ansible-doc -t module "$$m" >/dev/null || exit 1; done; echo "ansible-doc: $(words $(MODULES)) modules render"

unit: setup
	$(PYTEST) tests/unit -q

integration: setup
	$(PYTEST) tests/integration -q --durations=15

molecule: lab-image
	$(ENV) for s in $(SCENARIOS); do echo ">> molecule test -s $$s"; molecule test -s "$$s" || exit 1; done

bench: setup
	$(ENV) for b in bench/bench_*.py; do python "$$b" || exit 1; done
