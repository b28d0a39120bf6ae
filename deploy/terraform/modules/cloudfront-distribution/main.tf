# One domain in front of a private bucket. Every behaviour trusts the key group, so no request
# reaches S3 without a valid signed link; a viewer-request function binds methods to paths.
#
#   default (/*)   GET, HEAD      /files/{id} -> object uploads/{id}   cached for download_cache_ttl
#   /uploads/*     PUT, OPTIONS   object uploads/{id}                  never cached
#
# CloudFront only offers fixed method sets, so /uploads/* must admit all seven methods; the
# function refuses all but PUT and OPTIONS there.

locals {
  origin_id       = "s3-files"
  certificate_arn = var.acm_certificate_arn != null ? var.acm_certificate_arn : aws_acm_certificate_validation.this[0].certificate_arn
}

# --- certificate (us-east-1, DNS validation in route53_zone_id), unless acm_certificate_arn ---

resource "aws_acm_certificate" "this" {
  count    = var.acm_certificate_arn == null ? 1 : 0
  provider = aws.us_east_1

  domain_name       = var.domain_name
  validation_method = "DNS"

  options {
    certificate_transparency_logging_preference = "ENABLED"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_route53_record" "validation" {
  for_each = var.acm_certificate_arn == null ? {
    for option in aws_acm_certificate.this[0].domain_validation_options : option.domain_name => option
  } : {}

  zone_id         = var.route53_zone_id
  name            = each.value.resource_record_name
  type            = each.value.resource_record_type
  records         = [each.value.resource_record_value]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "this" {
  count    = var.acm_certificate_arn == null ? 1 : 0
  provider = aws.us_east_1

  certificate_arn         = aws_acm_certificate.this[0].arn
  validation_record_fqdns = [for record in aws_route53_record.validation : record.fqdn]
}

# --- origin access ---

resource "aws_cloudfront_origin_access_control" "this" {
  name                              = "${var.name}-files"
  description                       = "Signs every request to the files bucket"
  origin_access_control_origin_type = "s3"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

# --- method binding and path rewrite ---

resource "aws_cloudfront_function" "method_binding" {
  name    = "${var.name}-method-binding"
  runtime = "cloudfront-js-2.0"
  comment = "GET/HEAD on /files/{id} (rewritten to uploads/{id}), PUT/OPTIONS on /uploads/{id}, nothing else"
  publish = true
  code    = file("${path.module}/function.js")
}

# --- cache and origin request policies ---

# Downloads: files are write-once, so one cache entry per object. The signed-URL parameters
# stay out of the cache key and are never forwarded: S3 would read Expires/Signature as its own
# legacy query authentication. Only the link's response-content-type and
# response-content-disposition go to S3, which answers a signed (OAC) GET with those headers:
# the record's content type and file name, which S3 does not know. Every link to a file carries
# the same two values, so keying on them costs no cache hits; it keeps an answer cached from a
# link without them (minted before links carried them) from being served to links that have them.
resource "aws_cloudfront_cache_policy" "downloads" {
  name        = "${var.name}-downloads"
  comment     = "Write-once objects; keyed on the two response-* parameters only"
  min_ttl     = 0
  default_ttl = var.download_cache_ttl_seconds
  max_ttl     = var.download_cache_ttl_seconds

  parameters_in_cache_key_and_forwarded_to_origin {
    enable_accept_encoding_brotli = true
    enable_accept_encoding_gzip   = true

    cookies_config {
      cookie_behavior = "none"
    }

    headers_config {
      header_behavior = "none"
    }

    query_strings_config {
      query_string_behavior = "whitelist"
      query_strings {
        items = ["response-content-disposition", "response-content-type"]
      }
    }
  }
}

# Uploads are never cached (all TTLs zero; CloudFront then requires an empty cache key).
resource "aws_cloudfront_cache_policy" "uploads" {
  name        = "${var.name}-uploads"
  comment     = "Caching disabled"
  min_ttl     = 0
  default_ttl = 0
  max_ttl     = 0

  parameters_in_cache_key_and_forwarded_to_origin {
    enable_accept_encoding_brotli = false
    enable_accept_encoding_gzip   = false

    cookies_config {
      cookie_behavior = "none"
    }

    headers_config {
      header_behavior = "none"
    }

    query_strings_config {
      query_string_behavior = "none"
    }
  }
}

resource "aws_cloudfront_origin_request_policy" "downloads" {
  name    = "${var.name}-downloads"
  comment = "CORS request headers and the response-* parameters of the link"

  cookies_config {
    cookie_behavior = "none"
  }

  headers_config {
    header_behavior = "whitelist"
    headers {
      items = ["Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"]
    }
  }

  # In the cache key already (and so forwarded); listed here too so that this policy alone says
  # everything S3 receives from a download link.
  query_strings_config {
    query_string_behavior = "whitelist"
    query_strings {
      items = ["response-content-disposition", "response-content-type"]
    }
  }
}

# Uploads: S3's multipart parameters and the headers a PUT needs, nothing else (the signed-URL
# parameters stay at the edge). If-None-Match carries the `If-None-Match: *` the function sets on
# every whole-file PUT to S3: its conditional write (412 when the object exists) keeps an upload
# link from overwriting a finished upload, and the bucket policy refuses such a PUT without it.
resource "aws_cloudfront_origin_request_policy" "uploads" {
  name    = "${var.name}-uploads"
  comment = "partNumber/uploadId and upload headers (If-None-Match included)"

  cookies_config {
    cookie_behavior = "none"
  }

  headers_config {
    header_behavior = "whitelist"
    headers {
      items = [
        "Origin",
        "Access-Control-Request-Method",
        "Access-Control-Request-Headers",
        "Content-Type",
        "Content-MD5",
        "If-None-Match",
        "x-amz-checksum-sha256",
        "x-amz-sdk-checksum-algorithm",
      ]
    }
  }

  query_strings_config {
    query_string_behavior = "whitelist"
    query_strings {
      items = ["partNumber", "uploadId"]
    }
  }
}

resource "aws_cloudfront_response_headers_policy" "this" {
  name    = "${var.name}-security"
  comment = "HSTS, nosniff, sandbox CSP, frame denial, referrer policy and CORS for the configured origins"

  security_headers_config {
    # Files are the uploaders' bytes: should one ever be rendered, it runs in no origin at all.
    content_security_policy {
      content_security_policy = "default-src 'none'; sandbox"
      override                = true
    }

    strict_transport_security {
      access_control_max_age_sec = var.hsts_max_age_seconds
      include_subdomains         = true
      preload                    = true
      override                   = true
    }

    content_type_options {
      override = true
    }

    frame_options {
      frame_option = "DENY"
      override     = true
    }

    referrer_policy {
      referrer_policy = "no-referrer"
      override        = true
    }
  }

  dynamic "cors_config" {
    for_each = length(var.cors_allowed_origins) > 0 ? [1] : []
    content {
      access_control_allow_credentials = false
      access_control_max_age_sec       = 600
      origin_override                  = true

      access_control_allow_headers {
        # The conditional headers a resuming download sends, as Keyhole's own edge allows them.
        items = ["Content-Type", "Content-MD5", "Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since", "x-amz-checksum-sha256", "x-amz-sdk-checksum-algorithm"]
      }

      access_control_allow_methods {
        items = ["GET", "HEAD", "PUT", "OPTIONS"]
      }

      access_control_allow_origins {
        items = var.cors_allowed_origins
      }

      access_control_expose_headers {
        items = ["ETag", "Content-Length", "Content-Range", "Accept-Ranges", "Content-Disposition"]
      }
    }
  }
}

# --- web ACL (optional; CloudFront scope lives in us-east-1) ---

resource "aws_wafv2_web_acl" "this" {
  #checkov:skip=CKV2_AWS_31:Full WAF logging is billed per request and duplicates CloudFront's standard logs (every request with status); sampled requests and CloudWatch metrics are on. Attach an aws_wafv2_web_acl_logging_configuration per deployment if required.
  count    = var.web_acl_arn == null && var.create_web_acl ? 1 : 0
  provider = aws.us_east_1

  name        = "${var.name}-edge"
  description = "Keyhole edge: IP reputation, anonymisers, known bad inputs, per-IP rate limit"
  scope       = "CLOUDFRONT"

  default_action {
    allow {}
  }

  rule {
    name     = "aws-ip-reputation"
    priority = 10

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        name        = "AWSManagedRulesAmazonIpReputationList"
        vendor_name = "AWS"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-ip-reputation"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "aws-known-bad-inputs"
    priority = 20

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
        vendor_name = "AWS"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-known-bad-inputs"
      sampled_requests_enabled   = true
    }
  }

  # Anonymisers (Tor exits, anonymous proxies) are blocked; hosting-provider addresses are only
  # counted, because customers' own servers in public clouds upload and download too.
  rule {
    name     = "aws-anonymous-ip"
    priority = 30

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        name        = "AWSManagedRulesAnonymousIpList"
        vendor_name = "AWS"

        rule_action_override {
          name = "HostingProviderIPList"
          action_to_use {
            count {}
          }
        }
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-anonymous-ip"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "rate-limit-per-ip"
    priority = 40

    action {
      block {}
    }

    statement {
      rate_based_statement {
        limit              = var.waf_rate_limit_per_ip
        aggregate_key_type = "IP"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-rate-limit"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = "${var.name}-edge"
    sampled_requests_enabled   = true
  }
}

# --- the distribution ---

resource "aws_cloudfront_distribution" "this" {
  #checkov:skip=CKV_AWS_305:There is no website at "/": the viewer-request function answers 403 for every path outside /files/{id} and /uploads/{id}, so a default root object would never be served.
  #checkov:skip=CKV_AWS_310:A single S3 origin by design; origin failover would need a replicated second bucket, which conflicts with write-once, expiring objects (an upload would land in one bucket and be missed by the other's records).
  #checkov:skip=CKV_AWS_374:Customers download from anywhere; geo restriction is exposed as geo_restriction_type/locations for deployments that need it, default none.
  enabled             = true
  comment             = "Keyhole ${var.name}: signed links for ${var.domain_name}"
  aliases             = [var.domain_name]
  is_ipv6_enabled     = true
  http_version        = "http2and3"
  price_class         = var.price_class
  web_acl_id          = var.web_acl_arn != null ? var.web_acl_arn : one(aws_wafv2_web_acl.this[*].arn)
  wait_for_deployment = true

  origin {
    origin_id                = local.origin_id
    domain_name              = var.origin_bucket_regional_domain_name
    origin_access_control_id = aws_cloudfront_origin_access_control.this.id
  }

  # Downloads: /files/{id}, rewritten by the function to the object key.
  default_cache_behavior {
    target_origin_id           = local.origin_id
    viewer_protocol_policy     = "https-only"
    allowed_methods            = ["GET", "HEAD"]
    cached_methods             = ["GET", "HEAD"]
    compress                   = true
    cache_policy_id            = aws_cloudfront_cache_policy.downloads.id
    origin_request_policy_id   = aws_cloudfront_origin_request_policy.downloads.id
    response_headers_policy_id = aws_cloudfront_response_headers_policy.this.id
    trusted_key_groups         = var.trusted_key_group_ids

    function_association {
      event_type   = "viewer-request"
      function_arn = aws_cloudfront_function.method_binding.arn
    }
  }

  # Uploads: PUT /uploads/{id}, single or one part of a multipart upload.
  ordered_cache_behavior {
    path_pattern               = var.upload_path_pattern
    target_origin_id           = local.origin_id
    viewer_protocol_policy     = "https-only"
    allowed_methods            = ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"]
    cached_methods             = ["GET", "HEAD"]
    compress                   = false
    cache_policy_id            = aws_cloudfront_cache_policy.uploads.id
    origin_request_policy_id   = aws_cloudfront_origin_request_policy.uploads.id
    response_headers_policy_id = aws_cloudfront_response_headers_policy.this.id
    trusted_key_groups         = var.trusted_key_group_ids

    function_association {
      event_type   = "viewer-request"
      function_arn = aws_cloudfront_function.method_binding.arn
    }
  }

  restrictions {
    geo_restriction {
      restriction_type = var.geo_restriction_type
      locations        = var.geo_restriction_locations
    }
  }

  viewer_certificate {
    acm_certificate_arn      = local.certificate_arn
    ssl_support_method       = "sni-only"
    minimum_protocol_version = var.minimum_protocol_version
  }

  logging_config {
    bucket          = var.log_bucket_domain_name
    prefix          = var.log_prefix
    include_cookies = false
  }
}

resource "aws_cloudfront_monitoring_subscription" "this" {
  count           = var.additional_metrics ? 1 : 0
  distribution_id = aws_cloudfront_distribution.this.id

  monitoring_subscription {
    realtime_metrics_subscription_config {
      realtime_metrics_subscription_status = "Enabled"
    }
  }
}

# --- DNS (only in a Route 53 zone; elsewhere, point domain_name at distribution_domain_name) ---

resource "aws_route53_record" "alias" {
  for_each = var.route53_zone_id != null ? toset(["A", "AAAA"]) : toset([])

  zone_id = var.route53_zone_id
  name    = var.domain_name
  type    = each.key

  alias {
    name                   = aws_cloudfront_distribution.this.domain_name
    zone_id                = aws_cloudfront_distribution.this.hosted_zone_id
    evaluate_target_health = false
  }
}
