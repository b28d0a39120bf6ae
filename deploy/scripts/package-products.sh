#!/usr/bin/env bash
# Packages Keyhole's Terraform as Service Catalog products (type EXTERNAL): one NAME-VERSION.tar.gz
# per product, each a self-contained root configuration.
#
#   deploy/scripts/package-products.sh VERSION OUT_DIR
#
#   keyhole-signed-urls         the signed-urls stack, its modules under ./modules
#   keyhole-<module>            a module that stands alone as a root (default provider only),
#                               with the modules it calls under ./modules
#
# Module sources are rewritten to the bundled ./modules, and the stack's partial S3 backend is
# dropped (Service Catalog's Terraform engine keeps the state of what it provisions).
set -euo pipefail

version=${1:?usage: package-products.sh VERSION OUT_DIR}
out=${2:?usage: package-products.sh VERSION OUT_DIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
terraform_dir=$(cd "$here/../terraform" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

standalone_modules=(signing-keys private-key-secret metadata-table integration-role state-backend)

pack() { # NAME DIR
  local name=$1 dir=$2
  tar --sort=name --mtime='2000-01-01 00:00Z' --owner=0 --group=0 --numeric-owner \
    -czf "$out/$name-$version.tar.gz" -C "$dir" .
  echo "$out/$name-$version.tar.gz"
}

copy_module() { # MODULE DEST
  mkdir -p "$2"
  find "$terraform_dir/modules/$1" -maxdepth 1 -type f \( -name '*.tf' -o -name '*.js' -o -name 'README.md' \) \
    -exec cp {} "$2/" \;
}

# The complete stack.
root="$work/keyhole-signed-urls"
mkdir -p "$root/modules"
cp "$terraform_dir"/stacks/signed-urls/*.tf "$terraform_dir/stacks/signed-urls/README.md" "$root/"
for dir in "$terraform_dir"/modules/*/; do
  copy_module "$(basename "$dir")" "$root/modules/$(basename "$dir")"
done
sed -i 's#"\.\./\.\./modules/#"./modules/#' "$root"/*.tf
sed -i '/^  # Partial configuration/d; /^  backend "s3" {}$/d' "$root/versions.tf"
pack keyhole-signed-urls "$root"

# Modules that are roots of their own.
for module in "${standalone_modules[@]}"; do
  root="$work/keyhole-$module"
  copy_module "$module" "$root"
  for nested in $(grep -ho 'source *= *"\.\./[a-z0-9-]*"' "$root"/*.tf | sed 's#.*"\.\./\([a-z0-9-]*\)"#\1#' | sort -u); do
    copy_module "$nested" "$root/modules/$nested"
  done
  sed -i 's#"\.\./\([a-z0-9-]*\)"#"./modules/\1"#' "$root"/*.tf
  pack "keyhole-$module" "$root"
done
