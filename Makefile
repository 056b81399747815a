# rayalign: `make demo` runs the default pipeline, `make test` the test suite.
# Both create .venv and install the pinned CPU dependency set first, when needed.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rayalign-installed
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
ARGS ?=

.PHONY: install demo test clean-runs

install: $(STAMP)

$(STAMP): requirements-cpu.lock pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first: DeepSpeed's source build imports it (no build isolation).
	$(PIP) torch==2.13.0
	DS_BUILD_OPS=0 $(PIP) --no-deps --no-build-isolation -r requirements-cpu.lock
	$(PIP) --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: install
	$(VENV)/bin/rayalign run default $(ARGS)

test: install
	$(PY) -m pytest tests $(ARGS)

clean-runs:
	rm -rf runs
