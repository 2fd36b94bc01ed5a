# Two entry points for a fresh machine: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint format docs clean gpu-carry

# One pip call resolves torch and everything that depends on it together: one copy of torch.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,docs]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python recipes/demo_digits.py --output_dir runs/digits

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q --doctest-modules multicon tests

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The site from docs/ and the docstrings, into site/; strict: a broken link or reference fails.
# (No --quiet: it hides the warnings from the strict check too, and the build then passes.)
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# What tools/gpu_checks.sh needs on a lent GPU machine (carry .whl and .data; both git-ignored):
# open_clip 3.3 and its two packages that machine lacks, enwiki17m and the word-eval files.
gpu-carry: $(VENV)/.installed
	$(BIN)/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
		-d .whl open_clip_torch==3.3.0 ftfy wcwidth
	mkdir -p .data
	cp ../shared/data/enwiki17m/enwiki17m.txt.gz ../shared/data/word-eval/* .data/

clean:
	rm -rf $(VENV) runs site .pytest_cache .ruff_cache
