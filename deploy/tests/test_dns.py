"""DNS: Route 53 when the environment has a zone there; nothing of DNS when it is hosted elsewhere
(dns_zone_name = null), with the certificates passed in and the record targets as outputs."""

from hcl import expr, module, one, stack

STACK = stack("signed-urls")
CDN = module("cloudfront-distribution")
API = module("api")


def conditions(variable):
    return [v["condition"] for v in variable.get("validation", [])]


def test_the_zone_is_looked_up_only_when_named():
    zone = STACK.data["aws_route53_zone"]["this"]
    assert zone["count"] == "${var.dns_zone_name != null ? 1 : 0}"
    assert STACK.locals["zone_id"] == "${one(data.aws_route53_zone.this[*].zone_id)}"
    assert STACK.modules["cdn"]["route53_zone_id"] == "${local.zone_id}"
    assert STACK.modules["api"]["route53_zone_id"] == "${local.zone_id}"
    # Nothing else reads the zone directly (it may not exist).
    assert "data.aws_route53_zone.this.zone_id" not in STACK.code()


def test_the_stack_passes_certificates_through_and_refuses_dns_elsewhere_without_them():
    assert STACK.modules["cdn"]["acm_certificate_arn"] == "${var.acm_certificate_arn}"
    assert STACK.modules["api"]["certificate_arn"] == "${var.api_certificate_arn}"
    for name in ("acm_certificate_arn", "api_certificate_arn"):
        assert STACK.variables[name]["default"] is None
    files = conditions(STACK.variables["acm_certificate_arn"])
    assert "${var.acm_certificate_arn != null || var.dns_zone_name != null}" in files
    assert any("acm:us-east-1:" in c for c in files), "CloudFront reads certificates from us-east-1 only"
    api = conditions(STACK.variables["api_certificate_arn"])
    assert "${var.api_certificate_arn != null || var.dns_zone_name != null || var.api_domain == null}" in api
    assert "${var.api_certificate_arn == null || var.api_domain != null}" in api
    # dns_zone_name stays required (each environment says where its DNS is), null allowed.
    assert "default" not in STACK.variables["dns_zone_name"]
    assert STACK.variables["dns_zone_name"].get("nullable", True) is True


def test_the_distribution_writes_dns_only_into_a_zone():
    assert CDN.variables["route53_zone_id"]["default"] is None
    assert "${var.acm_certificate_arn != null || var.route53_zone_id != null}" in conditions(
        CDN.variables["acm_certificate_arn"]
    )
    alias = CDN.resource("aws_route53_record", "alias")
    assert alias["for_each"] == '${var.route53_zone_id != null ? toset(["A", "AAAA"]) : toset([])}'
    assert CDN.resource("aws_acm_certificate", "this")["count"] == "${var.acm_certificate_arn == null ? 1 : 0}"
    assert CDN.resource("aws_route53_record", "validation")["for_each"].startswith(
        "${var.acm_certificate_arn == null ?"
    )
    certificate = one(CDN.resource("aws_cloudfront_distribution", "this"), "viewer_certificate")
    assert certificate["acm_certificate_arn"] == "${local.certificate_arn}"
    assert "var.acm_certificate_arn != null ? var.acm_certificate_arn" in CDN.locals["certificate_arn"]


def test_the_api_domain_takes_a_certificate_and_writes_dns_only_into_a_zone():
    assert API.variables["certificate_arn"]["default"] is None
    assert "${var.domain_name == null || var.certificate_arn != null || var.route53_zone_id != null}" in conditions(
        API.variables["certificate_arn"]
    )
    assert API.locals["create_certificate"] == "${var.domain_name != null && var.certificate_arn == null}"
    assert API.resource("aws_acm_certificate", "api")["count"] == "${local.create_certificate ? 1 : 0}"
    assert API.resource("aws_acm_certificate_validation", "api")["count"] == "${local.create_certificate ? 1 : 0}"
    assert API.resource("aws_route53_record", "api_validation")["for_each"].startswith("${local.create_certificate ?")
    alias = API.resource("aws_route53_record", "api_alias")
    assert expr(alias["for_each"]).startswith("var.domain_name != null && var.route53_zone_id != null ?")
    domain = API.resource("aws_apigatewayv2_domain_name", "this")
    assert one(domain, "domain_name_configuration")["certificate_arn"] == "${local.certificate_arn}"
    assert "var.certificate_arn != null ? var.certificate_arn" in API.locals["certificate_arn"]


def test_the_record_targets_are_outputs():
    assert STACK.outputs["files_dns_target"]["value"] == "${module.cdn.distribution_domain_name}"
    assert STACK.outputs["api_dns_target"]["value"] == "${module.api.domain_target}"
    assert "target_domain_name" in API.outputs["domain_target"]["value"]
