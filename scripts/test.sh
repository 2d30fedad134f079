#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need beyond cargo, then format,
# lint and tests. Runs from any directory; needs Rust, Python 3 and pip.
set -euo pipefail
cd "$(dirname "$0")/.."

# Test dependencies that cargo does not bring: moto_server (S3, EC2) and PyYAML.
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r scripts/test-requirements.txt

# The standard age command (Debian package `age`): the encryption tests check that it decrypts
# lifeboat's archives. Installed when missing and this machine can (root with apt-get).
if ! command -v age >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -qq age >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq age >/dev/null; }
  else
    echo "scripts/test.sh: the age command is missing; install it (apt-get install age, brew install age)" >&2
    exit 1
  fi
fi

# Tests run from their crate's directory, so the corpus path must be absolute.
if [ -z "${LIFEBOAT_FIXTURES:-}" ] && [ -d ../shared/fixtures/real-world ]; then
  LIFEBOAT_FIXTURES=$(cd ../shared/fixtures/real-world && pwd)
  export LIFEBOAT_FIXTURES
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
