# Two entry points, each sets everything up first:
#   make demo   create .venv, install visattn, fetch Fashion-MNIST if apt can, run the main job
#   make test   create .venv, install visattn[dev] (and Debian's chromium for the docs test if apt can), run the tests
#   make docs   create .venv, install visattn[docs], build the documentation site into site/ (offline, strict)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: demo test test-all lint docs bench-results clean gpu-check fashion-mnist chromium

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.base: pyproject.toml | $(PY)
	$(PIP) -e '.[viz,progress]'
	@touch $@

$(VENV)/.dev: pyproject.toml | $(PY)
	$(PIP) -e '.[dev]'
	@touch $@ $(VENV)/.base $(VENV)/.docs

fashion-mnist:
	@if [ ! -e $(FMNIST)/train-images-idx3-ubyte.gz ] && [ -z "$$VISATTN_DATA" ] && command -v apt-get >/dev/null \
	    && [ "$$(id -u)" = 0 ]; then \
	  echo "Installing Debian's dataset-fashion-mnist ..."; \
	  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1)) || \
	  echo "apt-get could not install dataset-fashion-mnist; set VISATTN_DATA to a folder with the idx .gz files"; \
	fi

# the docs test opens the built gallery in headless Chromium; it skips (saying why) when no chromium exists
chromium:
	@if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null && command -v apt-get >/dev/null \
	    && [ "$$(id -u)" = 0 ]; then \
	  echo "Installing Debian's chromium (for the docs gallery test) ..."; \
	  (apt-get install -y -qq chromium >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1)) || \
	  echo "apt-get could not install chromium; the docs gallery test will be skipped"; \
	fi

$(VENV)/.docs: pyproject.toml | $(PY)
	$(PIP) -e '.[viz,progress,docs]'
	@touch $@

demo: $(VENV)/.base fashion-mnist
	$(VENV)/bin/visattn demo

test: $(VENV)/.dev chromium
	$(PY) -m pytest -q

test-all: $(VENV)/.dev chromium
	$(PY) -m pytest -q -m ''

# GPU tests and benchmarks in one command (about 5-8 minutes); without CUDA it says so and exits 0
gpu-check: $(VENV)/.dev
	$(PY) benchmarks/gpu_check.py

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests

docs: $(VENV)/.docs
	$(PY) scripts/gen_module_table.py
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

clean:
	rm -rf $(VENV) build site *.egg-info src/*.egg-info .pytest_cache
