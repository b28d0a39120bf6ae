"""Prints the Inputs and Outputs tables of a module or stack README from its .tf files.

    python deploy/scripts/readme_tables.py deploy/terraform/modules/api

Needs python-hcl2 (the tests' virtualenv); paste the output into the README. The tests check
that every variable and output is mentioned there.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hcl import load_dir  # noqa: E402


def cell(value) -> str:
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text


def default_of(body) -> str:
    if "default" not in body:
        return "required"
    value = body["default"]
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`' if len(value) < 60 else "see variables.tf"
    if isinstance(value, (list, dict)) and not value:
        return f"`{'[]' if isinstance(value, list) else '{}'}`"
    return f"`{value}`" if len(str(value)) < 60 else "see variables.tf"


def type_of(body) -> str:
    value = str(body.get("type", "any"))
    if value.startswith("${") and value.endswith("}"):
        value = value[2:-1]
    return f"`{value}`" if len(value) < 40 else "object (see variables.tf)"


def main() -> None:
    config = load_dir(Path(sys.argv[1]).resolve())
    print("## Inputs\n")
    print("| Name | Type | Default | Description |")
    print("|---|---|---|---|")
    required = [n for n, b in config.variables.items() if "default" not in b]
    optional = [n for n, b in config.variables.items() if "default" in b]
    for name in required + optional:
        body = config.variables[name]
        print(f"| `{name}` | {type_of(body)} | {default_of(body)} | {cell(body.get('description', ''))} |")
    print("\n## Outputs\n")
    print("| Name | Description |")
    print("|---|---|")
    for name, body in config.outputs.items():
        print(f"| `{name}` | {cell(body.get('description', ''))} |")


if __name__ == "__main__":
    main()
