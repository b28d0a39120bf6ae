"""Every resource carries Environment, Project, Owner and CostCenter through default_tags."""

import re

import pytest

from hcl import all_config_dirs, block, load_dir, module_dirs, stack_dirs

REQUIRED_TAGS = ("Environment", "Project", "Owner", "CostCenter")

# Resource types that AWS lets carry tags: each gets the default tags from the provider.
TAGGABLE = {
    "aws_acm_certificate", "aws_apigatewayv2_api", "aws_apigatewayv2_domain_name",
    "aws_apigatewayv2_stage", "aws_budgets_budget", "aws_cloudfront_distribution",
    "aws_cloudwatch_log_group", "aws_cloudwatch_metric_alarm", "aws_dynamodb_table",
    "aws_iam_policy", "aws_iam_role", "aws_kms_key", "aws_lambda_function",
    "aws_s3_bucket", "aws_secretsmanager_secret", "aws_servicecatalog_portfolio",
    "aws_servicecatalog_product", "aws_sns_topic", "aws_sqs_queue", "aws_wafv2_web_acl",
}
# Resource types without tags in the AWS API (or in the provider): nothing to check.
UNTAGGABLE = {
    "aws_acm_certificate_validation", "aws_apigatewayv2_api_mapping", "aws_apigatewayv2_authorizer",
    "aws_apigatewayv2_integration", "aws_apigatewayv2_route", "aws_cloudfront_cache_policy",
    "aws_cloudfront_function", "aws_cloudfront_key_group", "aws_cloudfront_monitoring_subscription",
    "aws_cloudfront_origin_access_control", "aws_cloudfront_origin_request_policy",
    "aws_cloudfront_public_key", "aws_cloudfront_response_headers_policy", "aws_cloudwatch_dashboard",
    "aws_iam_role_policy", "aws_iam_role_policy_attachment", "aws_kms_alias", "aws_kms_key_policy",
    "aws_lambda_alias", "aws_lambda_event_source_mapping", "aws_lambda_function_event_invoke_config",
    "aws_lambda_permission",
    "aws_route53_record", "aws_s3_bucket_cors_configuration", "aws_s3_bucket_lifecycle_configuration",
    "aws_s3_bucket_logging", "aws_s3_bucket_metric", "aws_s3_bucket_notification",
    "aws_s3_bucket_ownership_controls", "aws_s3_bucket_policy", "aws_s3_bucket_public_access_block",
    "aws_s3_bucket_server_side_encryption_configuration", "aws_s3_bucket_versioning",
    "aws_scheduler_schedule", "aws_secretsmanager_secret_policy", "aws_secretsmanager_secret_version",
    "aws_servicecatalog_constraint", "aws_servicecatalog_principal_portfolio_association",
    "aws_servicecatalog_product_portfolio_association", "aws_sns_topic_policy",
    "aws_sns_topic_subscription", "aws_sqs_queue_policy", "aws_sqs_queue_redrive_allow_policy",
    "tls_private_key", "terraform_data",
}


@pytest.mark.parametrize("path", stack_dirs(), ids=lambda p: p.name)
def test_every_aws_provider_of_a_stack_sets_the_default_tags(path):
    config = load_dir(path)
    aws_providers = [body for name, body in config.providers if name == "aws"]
    assert aws_providers, f"{path.name}: no aws provider"
    for body in aws_providers:
        assert block(body, "default_tags"), f"{path.name}: provider {body.get('alias', 'aws')} lacks default_tags"
        assert block(body, "default_tags")[0]["tags"] == "${local.default_tags}"
    tags = config.locals["default_tags"]
    # merge(extra, required): the required tags come last, so extra_tags cannot override them.
    assert tags.startswith("${merge(var.extra_tags, {"), tags
    for key, variable in zip(REQUIRED_TAGS, ("environment", "project", "owner", "cost_center")):
        assert re.search(rf"\b{key}\s*=\s*var\.{variable}\b", tags), f"{path.name}: {key}"


@pytest.mark.parametrize("path", module_dirs(), ids=lambda p: p.name)
def test_modules_inherit_the_stack_providers(path):
    config = load_dir(path)
    assert not config.providers, f"{path.name} configures a provider; its resources would escape default_tags"


@pytest.mark.parametrize("path", all_config_dirs(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_resource_type_is_known_taggable_or_not(path):
    config = load_dir(path)
    for rtype, name, body in config.all_resources():
        assert rtype in TAGGABLE | UNTAGGABLE, f"{rtype}.{name}: classify it in test_tags.py"
        if rtype in TAGGABLE and "tags" in body:
            # Resource tags may add to the defaults, never blank them.
            assert body["tags"] not in ({}, "${{}}"), f"{rtype}.{name} clears its tags"


@pytest.mark.parametrize("path", all_config_dirs(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_resources_pinned_to_a_provider_use_a_tagged_alias(path):
    config = load_dir(path)
    for rtype, name, body in config.all_resources():
        if "provider" in body:
            assert body["provider"] == "${aws.us_east_1}", f"{rtype}.{name}"


def test_modules_needing_us_east_1_receive_both_tagged_providers():
    for path in stack_dirs():
        config = load_dir(path)
        for name, call in config.modules.items():
            target = load_dir((path / call["source"]).resolve())
            aliases = [
                alias for tf in target.terraform for req in block(tf, "required_providers")
                for alias in req.get("aws", {}).get("configuration_aliases", [])
            ]
            if aliases:
                # python-hcl2 renders `{ aws = aws, aws.us_east_1 = aws.us_east_1 }` this way.
                assert call.get("providers") == {"aws": "aws", "${aws.us_east_1}": "${aws.us_east_1}"}, name
