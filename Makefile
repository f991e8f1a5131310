# make demo: create .venv (Python >= 3.12) if missing, install the project, run every model's comparison.
# make test: same bootstrap, then the whole test suite.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean browser

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@if [ ! -x $(PY) ]; then \
	  found=""; \
	  for p in python3.12 python3.13 python3.14 python3 \
	           $$HOME/.pyenv/versions/3.12*/bin/python3 $$HOME/.pyenv/versions/3.13*/bin/python3 \
	           /usr/local/bin/python3.12 /usr/local/bin/python3.13 /usr/bin/python3.12 /usr/bin/python3.13; do \
	    if [ -x "$$(command -v $$p 2>/dev/null)" ] && \
	       $$p -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then \
	      found=$$p; break; \
	    fi; \
	  done; \
	  if [ -z "$$found" ]; then \
	    echo "error: no Python >= 3.12 found (tried python3.12, python3.13, python3 and pyenv versions); install one and retry" >&2; \
	    exit 1; \
	  fi; \
	  echo "creating $(VENV) with $$found ($$($$found --version))"; \
	  $$found -m venv $(VENV); \
	fi
	@# uv installs the pinned set in about 20 s (pip took about a minute); pip remains the fallback wherever uv
	@# cannot be installed or cannot reach the package index. Bytecode is compiled at install, as pip does: where
	@# PYTHONDONTWRITEBYTECODE is set, every process the tests start would otherwise compile PyMC's sources anew.
	$(PY) -m pip install --quiet -c constraints.txt uv && \
	  $(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -c constraints.txt -e '.[test]' || \
	  { echo "uv failed; installing with pip"; $(PY) -m pip install --quiet --upgrade pip && \
	    $(PY) -m pip install --quiet -c constraints.txt -e '.[test]'; }
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/zoo compare normal poisson logistic gaussian_mixture missing_data --out runs
	$(VENV)/bin/zoo segment --out runs/segment
	@echo "report: open runs/index.html in a browser (segmentation: runs/segment/segmented.png)"

test: $(STAMP) browser
	$(PY) -m pytest -q -n auto --dist loadscope --no-loadscope-reorder --durations=15

# Headless Chromium renders the HTML report in the tests (Debian's package; installed when missing and possible).
browser:
	@command -v chromium >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1; } || \
	  echo "note: chromium could not be installed; the report's browser tests will be skipped"

clean:
	rm -rf $(VENV) runs
