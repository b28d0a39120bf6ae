"""What `terraform validate` would catch without the AWS provider's schema, checked by hand:
module calls match the modules' variables, every reference names something declared, every
variable is used; and each module documents every input and output."""

import re
from pathlib import Path

import hcl2
import pytest

from hcl import all_config_dirs, load_dir, module_dirs, normalise

META_ARGUMENTS = {"source", "version", "providers", "depends_on", "count", "for_each"}
DIRS = all_config_dirs()
IDS = [f"{p.parent.name}/{p.name}" for p in DIRS]


def called_modules(config):
    for name, call in config.modules.items():
        target = (config.path / call["source"]).resolve()
        yield name, call, target


@pytest.mark.parametrize("path", DIRS, ids=IDS)
def test_module_calls_match_the_called_modules_variables(path):
    config = load_dir(path)
    for name, call, target in called_modules(config):
        assert target.is_dir() and list(target.glob("*.tf")), f"module {name}: {call['source']} not found"
        callee = load_dir(target)
        arguments = set(call) - META_ARGUMENTS
        unknown = arguments - set(callee.variables)
        assert not unknown, f"module {name} passes undeclared {sorted(unknown)}"
        missing = callee.required_variables - arguments
        assert not missing, f"module {name} misses required {sorted(missing)}"


@pytest.mark.parametrize("path", DIRS, ids=IDS)
def test_module_output_references_exist(path):
    config = load_dir(path)
    targets = {name: load_dir(target) for name, _, target in called_modules(config)}
    for name, output in set(re.findall(r"\bmodule\.([a-z0-9_]+)(?:\.([a-z0-9_]+))?", config.code())):
        assert name in targets, f"module.{name} is not declared"
        if output:
            assert output in targets[name].outputs, f"module.{name}.{output} is not an output"


@pytest.mark.parametrize("path", DIRS, ids=IDS)
def test_variable_local_resource_and_data_references_exist(path):
    config = load_dir(path)
    code = config.code()
    for name in set(re.findall(r"\bvar\.([a-z0-9_]+)", code)):
        assert name in config.variables, f"var.{name} is not declared"
    for name in set(re.findall(r"\blocal\.([a-z0-9_]+)", code)):
        assert name in config.locals, f"local.{name} is not declared"
    for rtype, name in set(re.findall(r"(?<![\w.\"])((?:aws|tls)_[a-z0-9_]+|terraform_data)\.([a-z0-9_]+)", code)):
        assert name in config.resources.get(rtype, {}), f"{rtype}.{name} is not declared"
    for rtype, name in set(re.findall(r"\bdata\.([a-z0-9_]+)\.([a-z0-9_]+)", code)):
        assert name in config.data.get(rtype, {}), f"data.{rtype}.{name} is not declared"


@pytest.mark.parametrize("path", DIRS, ids=IDS)
def test_every_variable_is_used(path):
    config = load_dir(path)
    code = config.code()
    unused = [name for name in config.variables if not re.search(rf"\bvar\.{name}\b", code)]
    assert not unused, f"declared but never used: {unused}"


@pytest.mark.parametrize("path", DIRS, ids=IDS)
def test_every_variable_and_output_is_described(path):
    config = load_dir(path)
    for kind, items in (("variable", config.variables), ("output", config.outputs)):
        for name, body in items.items():
            assert body.get("description"), f"{kind} {name} has no description"
    for name, body in config.variables.items():
        assert "type" in body, f"variable {name} has no type"


@pytest.mark.parametrize("path", DIRS, ids=IDS)
def test_readme_documents_purpose_inputs_outputs_and_an_example(path):
    readme = path / "README.md"
    assert readme.is_file(), f"{path.name}: README.md missing"
    text = readme.read_text()
    headings = [h.strip().lower() for h in re.findall(r"^#+\s*(.+)$", text, flags=re.MULTILINE)]
    for section in ("inputs", "outputs", "example"):
        assert any(section in h for h in headings), f"{path.name}: no '{section}' section"
    assert any("purpose" in h for h in headings) or path.parent.name == "stacks", f"{path.name}: no purpose"
    config = load_dir(path)
    for name in list(config.variables) + list(config.outputs):
        assert f"`{name}`" in text, f"{path.name}: README does not mention `{name}`"


@pytest.mark.parametrize("path", module_dirs(), ids=lambda p: p.name)
def test_readme_example_calls_the_module_with_its_required_inputs(path):
    text = (path / "README.md").read_text()
    blocks = re.findall(r"```hcl\n(.*?)```", text, flags=re.DOTALL)
    calls = []
    for snippet in blocks:
        parsed = normalise(hcl2.loads(snippet))
        for block in parsed.get("module", []):
            calls.extend(block.values())
    mine = [c for c in calls if str(c.get("source", "")).rstrip("/").endswith(f"modules/{path.name}")]
    assert mine, f"{path.name}: no example `module` block with source .../modules/{path.name}"
    required = load_dir(path).required_variables
    for call in mine:
        missing = required - set(call)
        assert not missing, f"{path.name}: example misses {sorted(missing)}"
