.PHONY: up test lint bench

up:     ## start the whole stack locally
	./scripts/up

test:   ## install and run every check and test
	./scripts/test

lint:   ## ruff and mypy only
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

bench:  ## benchmark scripts (print ratios to a baseline run in the same command)
	.venv/bin/python -m loadtest.bench_tokens
	.venv/bin/python -m loadtest.bench_gateway
	.venv/bin/python -m loadtest.bench_recovery
	.venv/bin/python -m loadtest.bench_sse
	.venv/bin/python -m loadtest.bench_policies
