.PHONY: up test lint bench loadtest

up:     ## start the whole stack locally
	./scripts/up

test:   ## install and run every check and test
	./scripts/test

lint:   ## ruff and mypy only
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

bench:  ## CPU per operation as ratios to a floor measured in the same run (ARGS="--quick")
	./scripts/bench $(ARGS)
	.venv/bin/python -m loadtest.bench_policies
	.venv/bin/python -m loadtest.bench_snapshots

loadtest:  ## locust scenarios headless against a private stack; report in bench-results/loadtest-*/
	./scripts/loadtest $(ARGS)

