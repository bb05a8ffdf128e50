# The two commands: `make demo` runs the main job, `make test` runs the whole test suite.
# Each sets up .venv itself (scripts/bootstrap.sh); `make test` also makes sure PostgreSQL runs.
.PHONY: demo test test-fast venv lint bench lock clean

venv:
	@bash scripts/bootstrap.sh

demo: venv
	.venv/bin/kiosk demo $(DEMO_ARGS)

test: venv
	@export RNP_TEST_POSTGRES_URL="$$(bash scripts/ensure-postgres.sh)" && \
	.venv/bin/ruff check . && \
	.venv/bin/mypy && \
	.venv/bin/python -m pytest -q

# unit tests only: no PostgreSQL, pcscd, browser or server processes (a minute or less)
test-fast: venv
	.venv/bin/ruff check . && .venv/bin/mypy && \
	.venv/bin/python -m pytest -q -m "not postgres and not pcsc and not browser and not slow"

bench: venv
	.venv/bin/python bench/bench_fingerprint.py fvc
	.venv/bin/python bench/bench_dedup.py
	.venv/bin/python bench/bench_idcs.py
	.venv/bin/python bench/bench_kiosk.py
	.venv/bin/python bench/bench_intake.py

lock:
	.venv/bin/pip freeze --exclude-editable | grep -v -i '^face-recognition==' > requirements.lock.new
	@echo "review requirements.lock.new and move it over requirements.lock"

clean:
	rm -rf .venv var .pytest_cache .hypothesis
