# Backup operations toolkit. The two commands of the README:
#   make demo   set up this machine, build the lab, run the Seafile backup-server playbook
#   make test   everything CI runs (.ci/run calls exactly this)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
ENV := . scripts/env.sh &&
# Each pytest run gets its own short base temp directory, removed when the run passes; a passed
# test's directory goes as soon as it passed (scripts/pytest.sh, tests/conftest.py).
PYTEST := $(ENV) bash scripts/pytest.sh
SCENARIOS ?= $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))
# The scenarios that run in the LVM lab VM rather than in podman containers.
VM_SCENARIOS := lvm
PLAYBOOKS := $(wildcard playbooks/*.yml)
MODULES := $(basename $(notdir $(wildcard library/*.py)))

# Set by scripts/make-test.sh once setup has run, so its later stages do not run it again.
SETUP := $(if $(BT_SETUP_DONE),,setup)

.PHONY: setup lab-image demo demo-clean test check lint syntax docs unit integration molecule bench \
	integration-host integration-vm molecule-host molecule-host-list molecule-vm molecule-run

setup:
	bash scripts/setup.sh

lab-image: $(SETUP)
	bash scripts/lab/build-image.sh

demo: lab-image
	bash scripts/lab/demo.sh

demo-clean:
	bash scripts/lab/demo.sh --destroy

# Every stage, timed, with a table of the stages at the end (scripts/make-test.sh); integration
# and molecule run as two tracks side by side (scripts/test-tracks.sh): what runs in the LVM lab VM
# (CPU-bound under TCG) and what runs on the host and in containers.
test:
	bash scripts/make-test.sh

# The contributors' inner loop (a few minutes): lint, syntax, ansible-doc and the unit tests.
check: lint syntax unit

lint: $(SETUP)
	$(ENV) ruff check library plugins tests bench
	$(ENV) yamllint -s .
	$(ENV) ansible-lint --profile production -q

# One ansible-playbook and one ansible-doc process for all (each start costs a second or two): a
# playbook that does not parse fails the syntax check; a module whose documentation does not render
# makes ansible-doc exit non-zero, and any warning (e.g. a module not found) or a module missing from
# the output fails the target too.
syntax: $(SETUP)
	$(ENV) ansible-playbook --syntax-check -i inventories/example/hosts.yml $(PLAYBOOKS) >/dev/null; echo "syntax: $(words $(PLAYBOOKS)) playbooks ok"
	$(ENV) out=$$(mktemp) err=$$(mktemp); trap 'rm -f "$$out" "$$err"' EXIT; \
	  ANSIBLE_NOCOLOR=1 ansible-doc -t module $(MODULES) > "$$out" 2> "$$err" || { cat "$$err"; exit 1; }; \
	  if [ -s "$$err" ]; then cat "$$err"; exit 1; fi; \
	  for m in $(MODULES); do grep -q "^> MODULE $$m " "$$out" || { echo "ansible-doc: $$m not rendered"; exit 1; }; done; \
	  echo "ansible-doc: $(words $(MODULES)) modules render"

unit: $(SETUP)
	$(PYTEST) tests/unit -q

integration: $(SETUP)
	$(PYTEST) tests/integration -q --durations=15

molecule: lab-image
	$(MAKE) --no-print-directory molecule-run

# The two tracks of make test; they expect setup and lab-image done (running those twice at once
# would race), so they have no prerequisites of their own.
# INTEGRATION_HOST_WORKERS pytest-xdist workers, one test module each at a time (--dist loadfile, so a
# module's fixtures are set up once): the host tests spend much of their time waiting on servers,
# containers and timers, and a second worker uses that time. 1 runs them in one process.
INTEGRATION_HOST_WORKERS ?= 2
# An integration run past INTEGRATION_TIMEOUT seconds is interrupted (SIGINT: pytest tears its fixtures
# down, stopping servers, containers and VM sessions) and fails, instead of holding make test. 3600:
# the VM tests took 41 min on a slow day (2026-12-04); boot + 60 + molecule lvm's bound (20) stays
# under CI's 90 min.
INTEGRATION_TIMEOUT ?= 3600
BOUNDED_PYTEST = $(ENV) timeout -s INT -k 120 $(INTEGRATION_TIMEOUT) bash scripts/pytest.sh
integration-host:
	$(BOUNDED_PYTEST) tests/integration -q -m "not vm" --durations=25 \
	  $(if $(filter-out 1,$(INTEGRATION_HOST_WORKERS)),-n $(INTEGRATION_HOST_WORKERS) --dist loadfile)

integration-vm:
	$(BOUNDED_PYTEST) tests/integration -q -m vm --durations=15

molecule-host:
	$(MAKE) --no-print-directory molecule-run SCENARIOS="$(filter-out $(VM_SCENARIOS),$(SCENARIOS))"

molecule-host-list:
	@echo $(filter-out $(VM_SCENARIOS),$(SCENARIOS))

molecule-vm:
	$(MAKE) --no-print-directory molecule-run SCENARIOS="$(filter $(VM_SCENARIOS),$(SCENARIOS))"

# A scenario that runs past MOLECULE_TIMEOUT seconds is interrupted (molecule then destroys its
# instances: a scenario's own destroy runs, with its own bound) and fails, instead of holding make test
# until CI's limit (seen once: a lab VM paused on a full disk).
MOLECULE_TIMEOUT ?= 1200
# Each scenario's output is kept in a log while it runs and checked for the secret canary
# (tests/lib/canary.py: any CANARY-<name>, the lab inventory's passwords): a scenario whose output
# holds one fails, its log kept for a look.
molecule-run:
	$(ENV) for s in $(SCENARIOS); do echo ">> molecule test -s $$s"; log=$$(mktemp /tmp/bt-molecule-$$s.XXXXXX); rc=0; \
	  timeout -s INT -k 60 $(MOLECULE_TIMEOUT) molecule test -s "$$s" </dev/null 2>&1 | tee "$$log" || rc=$$?; \
	  python -m tests.lib.canary "$$log" || { echo "molecule: scenario $$s printed a secret; its output: $$log" >&2; exit 1; }; \
	  rm -f "$$log"; [ "$$rc" != 0 ] || continue; \
	  if [ "$$rc" = 124 ] || [ "$$rc" = 137 ]; then echo "molecule: scenario $$s ran past $(MOLECULE_TIMEOUT) s; destroying it" >&2; \
	    timeout -k 10 300 molecule destroy -s "$$s" </dev/null >/dev/null 2>&1 || true; fi; exit "$$rc"; done

bench: $(SETUP)
	$(ENV) for b in bench/bench_*.py; do python "$$b" || exit 1; done
