# Every target sets itself up: uv is installed with pip when missing, the locked environment is synced.
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
# The suite's sweeps wait on process starts (Ray, its workers, mlflow) as much as they compute: two
# test processes (pytest-xdist) keep 2 cores busy. `make test TEST_WORKERS=0` runs it in one process.
TEST_WORKERS ?= 2

.PHONY: setup quickstart test test-fast clean

setup:
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || \
		$(PYTHON) -m pip install --quiet uv || $(PYTHON) -m pip install --quiet --break-system-packages uv
	$(UV) sync --frozen --compile-bytecode  # .pyc ahead of time: imports (every Ray worker, every test subprocess) 2-4x faster where bytecode is not written at run time

quickstart: setup
	$(UV) run --frozen raysynth sweep search_spaces/quickstart.yaml

test: setup
	$(UV) run --frozen pytest --numprocesses $(TEST_WORKERS) --dist worksteal

test-fast: setup  # everything but the real sweeps, servers and multi-node clusters (marked slow)
	$(UV) run --frozen pytest -m "not slow" --numprocesses $(TEST_WORKERS) --dist worksteal

clean:
	rm -rf reports ray_results mlflow.db optuna.db mlartifacts
