"""The edge: signed links on every behaviour, OAC only, HTTPS and TLS >= 1.2, method binding."""

import re

from hcl import ROOT, block, expr, module, one, stack

CDN = module("cloudfront-distribution")
DIST = CDN.resource("aws_cloudfront_distribution", "this")
BEHAVIOURS = block(DIST, "default_cache_behavior") + block(DIST, "ordered_cache_behavior")
STACK = stack("signed-urls")
CDN_CALL = STACK.modules["cdn"]
REPO = ROOT.parents[1]


def test_there_is_a_download_and_an_upload_behaviour():
    assert len(block(DIST, "default_cache_behavior")) == 1
    ordered = block(DIST, "ordered_cache_behavior")
    assert [b["path_pattern"] for b in ordered] == ["${var.upload_path_pattern}"]
    assert CDN.variables["upload_path_pattern"]["default"] == "/uploads/*"


def test_every_behaviour_trusts_the_key_group():
    for behaviour in BEHAVIOURS:
        assert behaviour.get("trusted_key_groups") == "${var.trusted_key_group_ids}", behaviour
        assert "trusted_signers" not in behaviour
    # The module refuses an empty list, and the stack passes the signing-keys key group.
    validation = one(CDN.variables["trusted_key_group_ids"], "validation")
    assert "length(var.trusted_key_group_ids) > 0" in validation["condition"]
    assert CDN_CALL["trusted_key_group_ids"] == ["${module.signing_keys.key_group_id}"]
    assert "key_group_id" in module("signing-keys").outputs


def test_viewers_must_use_https():
    for behaviour in BEHAVIOURS:
        assert behaviour["viewer_protocol_policy"] in ("https-only", "redirect-to-https")


def test_minimum_tls_is_1_2_or_newer():
    certificate = one(DIST, "viewer_certificate")
    assert certificate["minimum_protocol_version"] == "${var.minimum_protocol_version}"
    assert certificate["ssl_support_method"] == "sni-only"
    assert "cloudfront_default_certificate" not in certificate
    variable = CDN.variables["minimum_protocol_version"]
    assert variable["default"] == "TLSv1.2_2021"
    allowed = re.findall(r'"(TLSv[^"]+)"', one(variable, "validation")["condition"])
    assert allowed and all(re.match(r"^TLSv1\.[23]_\d{4}$", v) for v in allowed), allowed
    if "minimum_protocol_version" in CDN_CALL:
        assert re.match(r"^TLSv1\.[23]_\d{4}$", CDN_CALL["minimum_protocol_version"])


def test_origin_is_reached_only_through_origin_access_control():
    oac = CDN.resource("aws_cloudfront_origin_access_control", "this")
    assert oac["signing_behavior"] == "always"
    assert oac["signing_protocol"] == "sigv4"
    assert oac["origin_access_control_origin_type"] == "s3"
    for origin in block(DIST, "origin"):
        assert origin["origin_access_control_id"] == "${aws_cloudfront_origin_access_control.this.id}"
        assert "s3_origin_config" not in origin, "no legacy origin access identity"
        assert "custom_origin_config" not in origin
    assert "aws_cloudfront_origin_access_identity" not in CDN.resources


def test_the_function_binds_methods_on_every_behaviour():
    function = CDN.resource("aws_cloudfront_function", "method_binding")
    assert function["runtime"] == "cloudfront-js-2.0"
    assert function["code"] == '${file("${path.module}/function.js")}'
    assert (CDN.path / "function.js").is_file()
    for behaviour in BEHAVIOURS:
        associations = block(behaviour, "function_association")
        assert [(a["event_type"], a["function_arn"]) for a in associations] == [
            ("viewer-request", "${aws_cloudfront_function.method_binding.arn}")
        ]


def test_downloads_allow_only_get_and_head():
    default = one(DIST, "default_cache_behavior")
    assert sorted(default["allowed_methods"]) == ["GET", "HEAD"]


def test_uploads_are_never_cached_and_forward_only_multipart_parameters():
    upload = block(DIST, "ordered_cache_behavior")[0]
    assert "PUT" in upload["allowed_methods"]
    cache = CDN.resource("aws_cloudfront_cache_policy", expr(upload["cache_policy_id"]).split(".")[1])
    assert (cache["min_ttl"], cache["default_ttl"], cache["max_ttl"]) == (0, 0, 0)
    request = CDN.resource(
        "aws_cloudfront_origin_request_policy", expr(upload["origin_request_policy_id"]).split(".")[1]
    )
    query = one(request, "query_strings_config")
    assert query["query_string_behavior"] == "whitelist"
    assert sorted(one(query, "query_strings")["items"]) == ["partNumber", "uploadId"]
    assert one(request, "cookies_config")["cookie_behavior"] == "none"


def test_uploads_forward_if_none_match_for_s3s_conditional_write():
    # docs/deployment.md (Known gaps): an uploader's `If-None-Match: *` reaches S3.
    upload = block(DIST, "ordered_cache_behavior")[0]
    request = CDN.resource(
        "aws_cloudfront_origin_request_policy", expr(upload["origin_request_policy_id"]).split(".")[1]
    )
    headers = one(request, "headers_config")
    assert headers["header_behavior"] == "whitelist"
    assert "If-None-Match" in one(headers, "headers")["items"]
    # A browser may send it cross-origin.
    cors = block(CDN.resource("aws_cloudfront_response_headers_policy", "this"), "dynamic")[0]["cors_config"]["content"][0]
    assert "If-None-Match" in one(cors, "access_control_allow_headers")["items"]


def test_signed_url_parameters_never_reach_s3():
    # S3 would read Expires/Signature as its own (legacy) query authentication.
    for behaviour in BEHAVIOURS:
        request = CDN.resource(
            "aws_cloudfront_origin_request_policy", expr(behaviour["origin_request_policy_id"]).split(".")[1]
        )
        query = one(request, "query_strings_config")
        forwarded = one(query, "query_strings")["items"] if query["query_string_behavior"] == "whitelist" else []
        assert query["query_string_behavior"] in ("none", "whitelist")
        assert not {"Expires", "Signature", "Key-Pair-Id", "Policy", "Hash-Algorithm"} & set(forwarded)
        cache = CDN.resource("aws_cloudfront_cache_policy", expr(behaviour["cache_policy_id"]).split(".")[1])
        params = one(cache, "parameters_in_cache_key_and_forwarded_to_origin")
        keyed = one(params, "query_strings_config")
        assert keyed["query_string_behavior"] in ("none", "whitelist")
        in_key = one(keyed, "query_strings")["items"] if keyed["query_string_behavior"] == "whitelist" else []
        assert not {"Expires", "Signature", "Key-Pair-Id", "Policy", "Hash-Algorithm"} & set(in_key)


RESPONSE_OVERRIDES = ["response-content-disposition", "response-content-type"]


def test_downloads_forward_exactly_the_response_header_overrides():
    # A download link on S3 storage carries the record's Content-Type and Content-Disposition as
    # S3's response-* overrides (crates/keyhole/src/links.rs); S3 applies them only if they arrive.
    default = one(DIST, "default_cache_behavior")
    request = CDN.resource(
        "aws_cloudfront_origin_request_policy", expr(default["origin_request_policy_id"]).split(".")[1]
    )
    query = one(request, "query_strings_config")
    assert query["query_string_behavior"] == "whitelist"
    assert sorted(one(query, "query_strings")["items"]) == RESPONSE_OVERRIDES
    # Keyed on them too, so an answer cached without the overrides never serves a link with them;
    # every link to one file carries the same values, so this costs no hits.
    cache = CDN.resource("aws_cloudfront_cache_policy", expr(default["cache_policy_id"]).split(".")[1])
    keyed = one(one(cache, "parameters_in_cache_key_and_forwarded_to_origin"), "query_strings_config")
    assert keyed["query_string_behavior"] == "whitelist"
    assert sorted(one(keyed, "query_strings")["items"]) == RESPONSE_OVERRIDES
    # The names the Lambda puts in its links.
    links = (REPO / "crates" / "keyhole" / "src" / "links.rs").read_text()
    for name in RESPONSE_OVERRIDES:
        assert f'"{name}=' in links or f'&{name}=' in links or f'?{name}=' in links, name


def test_security_headers_and_logging():
    policy = CDN.resource("aws_cloudfront_response_headers_policy", "this")
    security = one(policy, "security_headers_config")
    hsts = one(security, "strict_transport_security")
    assert hsts["override"] is True
    csp = one(security, "content_security_policy")
    assert csp == {"content_security_policy": "default-src 'none'; sandbox", "override": True}
    assert one(security, "content_type_options")["override"] is True
    assert CDN.variables["hsts_max_age_seconds"]["default"] >= 31536000
    for behaviour in BEHAVIOURS:
        assert behaviour["response_headers_policy_id"] == "${aws_cloudfront_response_headers_policy.this.id}"
    logging = one(DIST, "logging_config")
    assert logging["bucket"] == "${var.log_bucket_domain_name}"


def test_custom_domain_with_a_dns_validated_certificate_in_us_east_1():
    certificate = CDN.resource("aws_acm_certificate", "this")
    assert certificate["provider"] == "${aws.us_east_1}"
    assert certificate["validation_method"] == "DNS"
    assert DIST["aliases"] == ["${var.domain_name}"]
    alias = CDN.resource("aws_route53_record", "alias")
    assert alias["for_each"] == '${var.route53_zone_id != null ? toset(["A", "AAAA"]) : toset([])}'
    assert CDN_CALL["domain_name"] == "${var.files_domain}"


def test_web_acl_is_associated_by_default():
    assert CDN.variables["create_web_acl"]["default"] is True
    acl = CDN.resource("aws_wafv2_web_acl", "this")
    assert acl["scope"] == "CLOUDFRONT"
    assert acl["provider"] == "${aws.us_east_1}"
    assert "aws_wafv2_web_acl.this" in DIST["web_acl_id"]
