# The README's commands. Each installs what it needs on first use.
.PHONY: demo test stop stack lint

## demo: start the local stack, `labstream serve` and a simulated sensor feed, then print example queries
demo:
	@infra/local/demo

## test: start the local stack and run the whole test suite
test:
	@infra/local/test

## stop: stop the demo's labstream and the local stack
stop:
	@infra/local/demo stop
	@infra/local/stack down

## stack: start only the local stack (Kafka and the MongoDB-wire server)
stack:
	@infra/local/stack up

## lint: formatting and clippy, as the habits ask
lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
