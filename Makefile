# The two commands of the README. Both install what is missing first.
.PHONY: setup demo test bench lint

setup:
	bash scripts/setup.sh

demo: setup
	cargo run --release -- demo --out out

# The scale-out tests need PostgreSQL: started before, stopped after (even on failure).
test: setup
	bash scripts/test-services.sh start
	cargo test; status=$$?; bash scripts/test-services.sh stop; exit $$status

bench: setup
	cargo bench --bench frame
	cargo bench --bench monitor
	cargo bench --bench whisper
	cargo bench --bench e2e
	bash scripts/test-services.sh start
	cargo bench --bench cluster; status=$$?; bash scripts/test-services.sh stop; exit $$status

lint: setup
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
