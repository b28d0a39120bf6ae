"""Loads Terraform directories with python-hcl2 into plain Python structures for the tests.

python-hcl2 (v7+) keeps string literals quoted ('"value"'), writes expressions as "${...}" and
marks blocks with "__is_block__"; `load_dir` normalises that: quotes stripped from literals and
keys, markers dropped, so a test reads `bucket["rule"][0]["object_ownership"] == "BucketOwnerEnforced"`.
Expressions stay as "${...}" strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import hcl2

ROOT = Path(__file__).resolve().parents[1] / "terraform"
MODULES = ROOT / "modules"
STACKS = ROOT / "stacks"


def unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"' and "${" not in text[1:-1]:
        return text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1]
    return text


def normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            unquote(key): normalise(item)
            for key, item in value.items()
            if key not in ("__is_block__", "__comments__")
        }
    if isinstance(value, list):
        return [normalise(item) for item in value]
    if isinstance(value, str):
        return unquote(value)
    return value


def expr(text: str) -> str:
    """The expression inside "${...}", or the text itself."""
    if isinstance(text, str) and text.startswith("${") and text.endswith("}"):
        return text[2:-1]
    return text


def parse_file(path: Path) -> dict:
    with path.open() as handle:
        return normalise(hcl2.load(handle))


@dataclass
class Config:
    """One directory of .tf files (a module or a stack)."""

    path: Path
    resources: dict = field(default_factory=dict)  # type -> name -> body
    data: dict = field(default_factory=dict)  # type -> name -> body
    variables: dict = field(default_factory=dict)  # name -> body
    outputs: dict = field(default_factory=dict)  # name -> body
    locals: dict = field(default_factory=dict)
    modules: dict = field(default_factory=dict)  # name -> body
    providers: list = field(default_factory=list)  # (name, body)
    terraform: list = field(default_factory=list)
    text: str = ""

    def resource(self, rtype: str, name: str) -> dict:
        return self.resources[rtype][name]

    def all_resources(self):
        for rtype, by_name in self.resources.items():
            for name, body in by_name.items():
                yield rtype, name, body

    @property
    def required_variables(self) -> set[str]:
        return {name for name, body in self.variables.items() if "default" not in body}

    def code(self) -> str:
        """The source with full-line comments removed (for reference scanning)."""
        return "\n".join(
            line for line in self.text.splitlines() if not re.match(r"^\s*(#|//)", line)
        )


@lru_cache(maxsize=None)
def load_dir(path: Path) -> Config:
    config = Config(path=path)
    texts = []
    for file in sorted(path.glob("*.tf")):
        texts.append(file.read_text())
        parsed = parse_file(file)
        for block in parsed.get("resource", []):
            for rtype, by_name in block.items():
                for name, body in by_name.items():
                    assert name not in config.resources.get(rtype, {}), f"duplicate {rtype}.{name}"
                    config.resources.setdefault(rtype, {})[name] = body
        for block in parsed.get("data", []):
            for rtype, by_name in block.items():
                for name, body in by_name.items():
                    config.data.setdefault(rtype, {})[name] = body
        for block in parsed.get("variable", []):
            config.variables.update(block)
        for block in parsed.get("output", []):
            config.outputs.update(block)
        for block in parsed.get("locals", []):
            config.locals.update(block)
        for block in parsed.get("module", []):
            config.modules.update(block)
        for block in parsed.get("provider", []):
            for name, body in block.items():
                config.providers.append((name, body))
        config.terraform.extend(parsed.get("terraform", []))
    config.text = "\n".join(texts)
    return config


def module(name: str) -> Config:
    return load_dir(MODULES / name)


def stack(name: str) -> Config:
    return load_dir(STACKS / name)


def module_dirs() -> list[Path]:
    return sorted(p for p in MODULES.iterdir() if p.is_dir())


def stack_dirs() -> list[Path]:
    return sorted(p for p in STACKS.iterdir() if p.is_dir())


def all_config_dirs() -> list[Path]:
    return module_dirs() + stack_dirs()


def tfvars(path: Path) -> dict:
    return parse_file(path)


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def block(body: dict, name: str) -> list[dict]:
    """Nested blocks of one kind (python-hcl2 gives a list per block type)."""
    value = body.get(name, [])
    return value if isinstance(value, list) else [value]


def one(body: dict, name: str) -> dict:
    blocks = block(body, name)
    assert len(blocks) == 1, f"expected one {name} block, found {len(blocks)}"
    return blocks[0]


def statements(policy_document: dict) -> list[dict]:
    """Statements of a data.aws_iam_policy_document, static and dynamic (content of each)."""
    out = list(block(policy_document, "statement"))
    for dynamic in block(policy_document, "dynamic"):
        for content in dynamic.get("statement", {}).get("content", []):
            out.append(content)
    return out


def principals(statement: dict) -> list[tuple[str, list[str]]]:
    return [(p["type"], as_list(p["identifiers"])) for p in block(statement, "principals")]


def conditions(statement: dict) -> list[tuple[str, str, list]]:
    out = [(c["test"], c["variable"], as_list(c["values"])) for c in block(statement, "condition")]
    for dynamic in block(statement, "dynamic"):
        for content in dynamic.get("condition", {}).get("content", []):
            out.append((content["test"], content["variable"], as_list(content["values"])))
    return out
