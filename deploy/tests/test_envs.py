"""Every environment file sets every required variable, with the values of the original plan."""

import re

import pytest

from hcl import STACKS, load_dir, stack, tfvars

ENVIRONMENTS = ["infra-test", "dev", "test", "prod"]
SIGNED_URLS = STACKS / "signed-urls"
CLOUDWATCH_RETENTION_DAYS = {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}


def env_files():
    for stack_dir in sorted(STACKS.iterdir()):
        for path in sorted((stack_dir / "envs").glob("*.tfvars")):
            yield path


def values(env):
    return tfvars(SIGNED_URLS / "envs" / f"{env}.tfvars")


def test_the_four_environments_exist():
    assert sorted(p.stem for p in (SIGNED_URLS / "envs").glob("*.tfvars")) == sorted(ENVIRONMENTS)


@pytest.mark.parametrize("path", list(env_files()), ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_env_file_sets_every_required_variable_and_nothing_unknown(path):
    config = load_dir(path.parent.parent)
    given = tfvars(path)
    missing = config.required_variables - set(given)
    assert not missing, f"{path.name} misses {sorted(missing)}"
    unknown = set(given) - set(config.variables)
    assert not unknown, f"{path.name} sets undeclared {sorted(unknown)}"
    assert given["environment"] == path.stem


@pytest.mark.parametrize("path", list(env_files()), ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_env_values_pass_the_variable_validations_we_can_read(path):
    config = load_dir(path.parent.parent)
    given = tfvars(path)
    for name, body in config.variables.items():
        for validation in body.get("validation", []):
            allowed = re.match(r'^\$\{contains\(\[(.*)\], var\.' + name + r'\)\}$', validation["condition"])
            if allowed and name in given:
                options = re.findall(r'"([^"]*)"', allowed.group(1))
                assert given[name] in options, f"{path.name}: {name}={given[name]!r} not in {options}"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_env_has_a_backend_config_of_its_own(env):
    backend = tfvars(SIGNED_URLS / "envs" / f"{env}.backend.hcl")
    assert backend["key"] == f"signed-urls/{env}.tfstate"
    assert env in backend["bucket"]
    assert backend["encrypt"] is True
    assert backend["kms_key_id"].startswith("arn:aws:kms:")
    assert backend["use_lockfile"] is True and backend["dynamodb_table"]
    account = values(env)["allowed_account_ids"][0]
    assert account in backend["bucket"] and account in backend["kms_key_id"], "state lives in the env's account"
    # The stack's backend is a partial S3 configuration completed by this file.
    assert 'backend "s3" {}' in stack("signed-urls").text


def test_lambda_memory_per_environment():
    assert {env: values(env)["lambda_memory_mb"] for env in ENVIRONMENTS} == {
        "infra-test": 256, "dev": 512, "test": 512, "prod": 1024,
    }


def test_prod_has_point_in_time_recovery_and_every_edge_location():
    prod = values("prod")
    assert prod["point_in_time_recovery"] is True
    assert prod["price_class"] == "PriceClass_All"
    for env in ENVIRONMENTS:
        assert values(env)["price_class"] in ("PriceClass_100", "PriceClass_200", "PriceClass_All")


def test_domains_are_consistent_and_distinct():
    seen = set()
    for env in ENVIRONMENTS:
        v = values(env)
        zone = v["dns_zone_name"]
        assert zone == ("example.com" if env == "prod" else f"{env}.example.com")
        assert v["files_domain"] == f"files.{zone}"
        assert v["api_domain"] == f"files-api.{zone}"
        for origin in v.get("cors_allowed_origins", []):
            assert origin.startswith("https://") and origin.endswith(zone)
        assert not {v["files_domain"], v["api_domain"]} & seen
        seen |= {v["files_domain"], v["api_domain"]}


def test_each_environment_is_pinned_to_its_own_account():
    accounts = [tuple(values(env)["allowed_account_ids"]) for env in ENVIRONMENTS]
    assert len(set(accounts)) == len(ENVIRONMENTS)
    for account in accounts:
        assert len(account) == 1 and re.fullmatch(r"\d{12}", account[0])


def test_log_retention_is_a_value_cloudwatch_accepts():
    config = stack("signed-urls")
    assert config.variables["log_retention_days"]["default"] in CLOUDWATCH_RETENTION_DAYS
    for env in ENVIRONMENTS:
        assert values(env).get("log_retention_days", 365) in CLOUDWATCH_RETENTION_DAYS
