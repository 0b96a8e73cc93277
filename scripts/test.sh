#!/usr/bin/env bash
# Runs every Closeloop test: makes sure PostgreSQL and NATS (JetStream) are up (starting them,
# or installing the Debian packages when absent), then the whole workspace's tests: unit,
# property (10,000+ cases), event-log conformance on every backend, and integration tests
# against the real services. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
cargo test --workspace "$@"
