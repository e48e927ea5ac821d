# The README's two commands are `make demo` and `make test`; both set everything up first.
SHELL := /bin/bash
RUN := scripts/run.sh

.PHONY: setup demo test test-fast conformance-deepdrr bench bench-renderer clean

setup:
	@scripts/setup.sh

demo: setup
	@$(RUN) fluorosam demo

test: setup
	@$(RUN) python -m pytest

# Unit tests only (no ROS processes), for a quick loop while editing.
test-fast: setup
	@$(RUN) python -m pytest -m "not ros and not slow"

# Re-run the projection-matrix conformance against a LIVE deepdrr install (its own venv,
# 3.9 GB, created on first use) instead of the committed fixture.
conformance-deepdrr: setup
	@scripts/setup_deepdrr_venv.sh .venv-deepdrr
	@.venv-deepdrr/bin/python test/fixtures/make_deepdrr_fixture.py --out .cache/deepdrr_live_fixture.json --seed $$RANDOM
	@FLUOROSAM_DEEPDRR_FIXTURE=.cache/deepdrr_live_fixture.json $(RUN) python -m pytest -q test/geometry/test_deepdrr_conformance.py -s

bench: bench-renderer

bench-renderer: setup
	@$(RUN) python bench/bench_renderer.py

clean:
	rm -rf build .cache/numba
