#!/usr/bin/env bash
# Packages Keyhole's Terraform as Service Catalog products (type EXTERNAL): one NAME-VERSION.tar.gz
# per product, each a self-contained root configuration.
#
#   deploy/scripts/package-products.sh VERSION OUT_DIR [s3://BUCKET/KEY]
#
#   keyhole-signed-urls         the signed-urls stack, its modules under ./modules
#   keyhole-<module>            a module that stands alone as a root (default provider only),
#                               with the modules it calls under ./modules
#
# Module sources are rewritten to the bundled ./modules, and the stack's partial S3 backend is
# dropped (Service Catalog's Terraform engine keeps the state of what it provisions).
#
# The archives hold configuration only. The stack's Lambda package comes from S3
# (lambda_s3_bucket, lambda_s3_key): its default lambda_zip, a path into the build tree, does not
# exist where the product is launched, so the packaged stack has none. With s3://BUCKET/KEY (the
# release's bootstrap.zip, published beside the archives) the packaged stack defaults to it, so
# each product version deploys its own Lambda build without a launch parameter; without it,
# launchers pass lambda_s3_bucket and lambda_s3_key.
set -euo pipefail

usage='usage: package-products.sh VERSION OUT_DIR [s3://BUCKET/KEY]'
version=${1:?$usage}
out=${2:?$usage}
lambda_package=${3:-}
lambda_bucket=
lambda_key=
# Bucket names as S3 allows them; keys limited to characters that need no quoting anywhere.
s3_url='^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/([A-Za-z0-9._/+=-]+)$'
if [[ -n $lambda_package ]]; then
  if [[ ! $lambda_package =~ $s3_url ]]; then
    echo "package-products.sh: $lambda_package is not s3://BUCKET/KEY" >&2
    exit 2
  fi
  lambda_bucket=${BASH_REMATCH[1]}
  lambda_key=${BASH_REMATCH[2]}
fi
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
# set_default VARIABLE VALUE: the default of one variable of the packaged stack.
set_default() {
  sed -i "/^variable \"$1\" {\$/,/^}\$/ s#^  default     = .*#  default     = $2#" "$root/variables.tf"
  grep -A8 "^variable \"$1\" {" "$root/variables.tf" | grep -qxF "  default     = $2" ||
    { echo "package-products.sh: could not set the default of $1" >&2; exit 1; }
}
set_default lambda_zip null
if [[ -n $lambda_bucket ]]; then
  set_default lambda_s3_bucket "\"$lambda_bucket\""
  set_default lambda_s3_key "\"$lambda_key\""
fi
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
