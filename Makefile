# sparseopt-edu: every target sets itself up on a fresh machine (venv + pip, see ../shared/design/ENV.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 8888

.PHONY: setup lab demo dashboard test test-fast lint bench notebooks browser-deps data-deps clean help

help:
	@echo "make lab        set up, then open the course in JupyterLab"
	@echo "make demo       set up, then run the headless demo (CPU, well under a minute)"
	@echo "make dashboard  set up, then serve the two playground notebooks with Voila"
	@echo "make test       set up, then run every test (unit, notebooks, browser)"
	@echo "make bench      run the benchmarks (GPU numbers need a GPU)"
	@echo "make notebooks  rebuild every notebook from tools/nbsrc, then execute it (fast mode) for its outputs"

setup: $(STAMP) data-deps

# The real Fashion-MNIST offline (notebook 05, reproduce --dataset fashion_mnist): Debian ships it (30 MB).
FASHION := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
data-deps:
	@test -f $(FASHION) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
	      || echo "data-deps: could not install dataset-fashion-mnist; the real-data parts use committed results"; \
	  else echo "data-deps: Fashion-MNIST missing; install it with: sudo apt-get install dataset-fashion-mnist"; fi; }

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	$(BIN)/python -m sparseopt_edu.jupyter_setup --prefix $(VENV)
	touch $(STAMP)

# The server's root is the checkout, so the notebooks' links to ../docs/ open (a root of notebooks/ answers 404
# for them); the browser opens notebook 00. tests/test_notebook_links.py checks every link against this root.
LAB_ROOT := .
LAB_START := notebooks/00_start_here.ipynb
lab: setup
	$(BIN)/jupyter lab --ServerApp.root_dir=$(LAB_ROOT) --LabApp.default_url=/lab/tree/$(LAB_START) --port=$(PORT)

demo: setup
	$(BIN)/sparseopt-edu demo

# The two playground notebooks as dashboards, one Voila server each (Voila serves one notebook per server;
# training starts from a button, in a background thread). Ctrl-C stops both.
DASH_PORT ?= 8866
dashboard: setup
	@echo "02 (gradient skew): http://127.0.0.1:$(DASH_PORT)/   04 (race): http://127.0.0.1:$$(( $(DASH_PORT) + 1 ))/"
	@trap 'kill 0' INT TERM; \
	$(BIN)/voila notebooks/02_batchnorm_meets_sparsity.ipynb --port=$(DASH_PORT) --no-browser & \
	$(BIN)/voila notebooks/04_sparseopt.ipynb --port=$$(( $(DASH_PORT) + 1 )) --no-browser & \
	wait

# Browser tests need Debian's chromium; installed here when missing and possible, else skipped with a reason.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "browser-deps: could not install chromium; browser tests will be skipped"; \
	  else echo "browser-deps: chromium missing and not root; browser tests will be skipped"; fi; }

test: setup browser-deps
	SPARSEOPT_EDU_FAST=1 $(BIN)/python -m pytest -q tests notebooks --nbval-lax --nbval-current-env \
	  --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

# Unit tests only (no notebooks, no browser): the quick loop while developing.
test-fast: setup
	$(BIN)/python -m pytest -q tests -m "not browser" -p no:cacheprovider

lint: setup
	$(BIN)/ruff check sparseopt_edu tests benchmarks tools
	$(BIN)/python tools/strip_notebooks.py --check notebooks/*.ipynb

# Notebooks are generated: tools/nbsrc/nbNN.py is the source, notebooks/NN_*.ipynb the build. Rebuild them
# all (any checkout: the sources find the repository from their own path), then execute them in fast mode
# (the mode nbval checks in) so the # NBVAL_CHECK_OUTPUT reference outputs match; execute_notebook strips.
# tests/test_notebook_sources.py fails when a committed notebook differs from what its source builds.
NB_SOURCES := $(sort $(wildcard tools/nbsrc/nb[0-9][0-9].py))
notebooks: setup
	$(BIN)/python tools/nbsrc/nbb.py $(NB_SOURCES)
	$(BIN)/python tools/execute_notebook.py $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))

bench: setup
	$(BIN)/python benchmarks/step_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
