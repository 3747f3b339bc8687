# Two commands for a fresh machine: `make demo` (the agent on its built-in lab) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fuzz fuzz-atheris soak fault-load bench install lint clean

demo: $(VENV)/.installed
	$(BIN)/callipso-agent demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest

# longer runs of the reliability suite (figures in docs/reliability.md)
test-fuzz: $(VENV)/.installed
	CALLIPSO_FUZZ_EXAMPLES=$${CALLIPSO_FUZZ_EXAMPLES:-20000} $(BIN)/python -m pytest tests/reliability/test_fuzz.py tests/transports/test_ber.py -q

# the benchmark (bench/README.md): the agent against net-snmp and snmp_exporter on N simulated devices
N ?= 2000
bench: $(VENV)/.installed
	$(BIN)/python -m bench.run --devices $(N)

# the lab agent for CALLIPSO_SOAK_SECONDS (default 1 h) with faults coming and going; RSS, fds, threads,
# asyncio tasks and event-loop lag every CALLIPSO_SOAK_EVERY s (default 10) into results/soak-*/
soak: $(VENV)/.installed
	$(BIN)/python -m tests.reliability.soak

# FAULT_DEVICES udpsim devices (30 % misbehaving: cut-off sites, silence, late, truncated, garbage, wrong
# community, genErr, restarts) polled by the real daemon for FAULT_SECONDS; figures and checks into
# results/fault-load-*/ (docs/reliability.md)
FAULT_DEVICES ?= 2000
FAULT_SECONDS ?= 600
FAULT_INTERVAL ?= 60
fault-load: $(VENV)/.installed
	$(BIN)/python -m tests.reliability.fault_load --devices $(FAULT_DEVICES) --duration $(FAULT_SECONDS) \
	  --interval $(FAULT_INTERVAL)

# coverage-guided fuzzing (atheris) of the trap decode path, SSH output parsing and the configuration loader,
# FUZZ_SECONDS per target on a corpus kept in .fuzz/; a finding leaves .fuzz/<target>-crash-* to reproduce
FUZZ_SECONDS ?= 600
fuzz-atheris: $(VENV)/.installed
	for t in trap ssh config; do \
	  PYTHONPATH=. $(BIN)/python -m tests.reliability.atheris_targets $$t .fuzz/$$t -max_total_time=$(FUZZ_SECONDS) \
	    -max_len=8192 -artifact_prefix=.fuzz/$$t- -print_final_stats=1 || exit 1; \
	done

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

lint: $(VENV)/.installed
	$(BIN)/python -m ruff check callipso_agent tests bench

clean:
	rm -rf $(VENV) .lab .pytest_cache .fuzz
