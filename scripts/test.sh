#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need beyond cargo, then format,
# lint and tests. Runs from any directory; needs Rust, Python 3 and pip.
set -euo pipefail
cd "$(dirname "$0")/.."

# Test dependencies that cargo does not bring: moto_server (S3, EC2) and PyYAML.
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r scripts/test-requirements.txt

# The standard age command (Debian package `age`): an encryption test checks that it decrypts
# lifeboat's archives. Installed when missing and this machine can (root with apt-get);
# without it that one check is skipped with a message, except under CI=true where it fails.
if ! command -v age >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get install -y -qq age >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq age >/dev/null 2>&1; } ||
    echo "scripts/test.sh: could not install the age command (apt-get install age)" >&2
fi

# Tests run from their crate's directory, so the corpus path must be absolute.
if [ -z "${LIFEBOAT_FIXTURES:-}" ] && [ -d ../shared/fixtures/real-world ]; then
  LIFEBOAT_FIXTURES=$(cd ../shared/fixtures/real-world && pwd)
  export LIFEBOAT_FIXTURES
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
