#!/usr/bin/env bash
# Builds the deployable Lambda zip (target/lambda/keyhole-lambda/bootstrap.zip) with cargo-lambda,
# cross-linking with zig for the provided.al2023 runtime.
#
#   bash scripts/build-lambda.sh            # x86_64
#   bash scripts/build-lambda.sh --arm64    # arm64 (needs the aarch64-unknown-linux-gnu std)
#
# cargo-lambda and ziglang come from PyPI, into a venv under ~/.cache/keyhole/lambda-venv
# (override with KEYHOLE_LAMBDA_VENV) that is created once. OpenSSL and SQLite are compiled in
# statically (keyhole-lambda's `vendored` feature), so the zip does not depend on the runtime
# image's libssl. Prints the zip's path, size and SHA-256 and checks it contains `bootstrap`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${KEYHOLE_LAMBDA_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/keyhole/lambda-venv}
ARCH=x86_64
TARGET=x86_64-unknown-linux-gnu

say() { printf 'build-lambda: %s\n' "$*" >&2; }
die() {
  say "$*"
  exit 1
}

for arg in "$@"; do
  case $arg in
    --arm64) ARCH=arm64 TARGET=aarch64-unknown-linux-gnu ;;
    --x86_64 | --x86-64) ARCH=x86_64 TARGET=x86_64-unknown-linux-gnu ;;
    -h | --help)
      sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument $arg (use --arm64 or --x86_64)" ;;
  esac
done

# The Rust standard library for the target must be installed; it is not built here.
if [[ $TARGET != "$(rustc -vV | sed -n 's/^host: //p')" ]]; then
  sysroot=$(rustc --print sysroot)
  if [[ ! -d $sysroot/lib/rustlib/$TARGET/lib ]]; then
    die "the Rust standard library for $TARGET is not installed (no $sysroot/lib/rustlib/$TARGET).
  Install it with: rustup target add $TARGET
  (that downloads from the Rust project's servers, outside the package registries; on machines
  that cannot reach them an arm64 zip cannot be built: build on one that can, or deploy x86_64
  with lambda_architecture = \"x86_64\")"
  fi
fi

if [[ ! -x $VENV/bin/cargo-lambda ]] || ! "$VENV/bin/python" -c 'import ziglang' 2>/dev/null; then
  say "creating $VENV with cargo-lambda and ziglang from PyPI"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip >&2
  "$VENV/bin/pip" install --quiet cargo-lambda ziglang >&2
fi
export PATH="$VENV/bin:$PATH"

cd "$ROOT"
say "$(cargo lambda --version 2>/dev/null | head -1), target $TARGET"
start=$(date +%s)
flag=()
[[ $ARCH == arm64 ]] && flag=(--arm64) || flag=(--x86-64)
cargo lambda build --release -p keyhole-lambda --features vendored "${flag[@]}" \
  --output-format zip >&2
elapsed=$(($(date +%s) - start))

ZIP=$ROOT/target/lambda/keyhole-lambda/bootstrap.zip
[[ -f $ZIP ]] || die "cargo lambda finished but $ZIP is missing"
python3 - "$ZIP" <<'PY' || die "$ZIP does not contain an executable bootstrap"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    info = z.getinfo("bootstrap")
    if not (info.external_attr >> 16) & 0o111:
        sys.exit("bootstrap is not executable")
PY
size=$(stat -c %s "$ZIP")
echo "zip:     $ZIP"
echo "arch:    $ARCH ($TARGET)"
echo "size:    $size bytes ($(((size + 1048575) / 1048576)) MiB)"
echo "sha256:  $(sha256sum "$ZIP" | awk '{print $1}')"
echo "built in ${elapsed}s"
