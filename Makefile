# The two commands of the README. Both install what is missing first.
.PHONY: setup demo test bench lint

setup:
	bash scripts/setup.sh

demo: setup
	cargo run --release -- demo --out out

test: setup
	cargo test

bench: setup
	cargo bench --bench frame
	cargo bench --bench monitor
	cargo bench --bench whisper
	cargo bench --bench e2e

lint: setup
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
