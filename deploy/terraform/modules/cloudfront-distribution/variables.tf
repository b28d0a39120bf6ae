variable "name" {
  description = "Name prefix for policies, the function and the web ACL, e.g. `keyhole-dev`."
  type        = string
}

variable "domain_name" {
  description = "The one custom domain every link uses, e.g. `files.dev.example.com`."
  type        = string
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone holding domain_name: certificate validation records and the A/AAAA aliases go here. null when the domain's DNS is hosted elsewhere: then acm_certificate_arn is required and the record pointing domain_name at the distribution is yours to create."
  type        = string
  default     = null
}

variable "acm_certificate_arn" {
  description = "An existing ACM certificate in us-east-1 for domain_name; null creates and DNS-validates one in route53_zone_id."
  type        = string
  default     = null

  validation {
    condition     = var.acm_certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:us-east-1:[0-9]{12}:certificate/.+$", var.acm_certificate_arn))
    error_message = "acm_certificate_arn must be an ACM certificate in us-east-1 (arn:aws:acm:us-east-1:ACCOUNT:certificate/ID): CloudFront uses no other region."
  }

  validation {
    condition     = var.acm_certificate_arn != null || var.route53_zone_id != null
    error_message = "Without route53_zone_id (DNS hosted elsewhere) pass acm_certificate_arn: a certificate can be DNS-validated here only in a Route 53 zone."
  }
}

variable "origin_bucket_regional_domain_name" {
  description = "Regional domain name of the private files bucket."
  type        = string
}

variable "trusted_key_group_ids" {
  description = "CloudFront key groups trusted on every cache behaviour (signed URLs required everywhere)."
  type        = list(string)

  validation {
    condition     = length(var.trusted_key_group_ids) > 0
    error_message = "At least one trusted key group is required: every behaviour demands signed links."
  }
}

variable "upload_path_pattern" {
  description = "Path pattern of the upload behaviour."
  type        = string
  default     = "/uploads/*"
}

variable "price_class" {
  description = "PriceClass_100, PriceClass_200 or PriceClass_All."
  type        = string
  default     = "PriceClass_100"

  validation {
    condition     = contains(["PriceClass_100", "PriceClass_200", "PriceClass_All"], var.price_class)
    error_message = "price_class must be PriceClass_100, PriceClass_200 or PriceClass_All."
  }
}

variable "minimum_protocol_version" {
  description = "Minimum TLS version viewers may use."
  type        = string
  default     = "TLSv1.2_2021"

  validation {
    condition     = contains(["TLSv1.2_2018", "TLSv1.2_2019", "TLSv1.2_2021"], var.minimum_protocol_version)
    error_message = "Only TLS 1.2 or newer security policies are allowed."
  }
}

variable "download_cache_ttl_seconds" {
  description = "How long edges keep a downloaded object (files are write-once). A deleted file stays reachable at most this long, and only through a link that is still valid."
  type        = number
  default     = 3600
}

variable "cors_allowed_origins" {
  description = "Browser origins allowed by the response-headers policy (CORS). Empty disables CORS headers."
  type        = list(string)
  default     = []
}

variable "hsts_max_age_seconds" {
  description = "Strict-Transport-Security max-age."
  type        = number
  default     = 63072000
}

variable "log_bucket_domain_name" {
  description = "Domain name (bucket.s3.amazonaws.com) of the bucket receiving CloudFront standard logs; it must have ACLs enabled."
  type        = string
}

variable "log_prefix" {
  description = "Prefix of the standard logs in the log bucket."
  type        = string
  default     = "cloudfront/"
}

variable "web_acl_arn" {
  description = "An existing WAFv2 web ACL (scope CLOUDFRONT) to associate; null creates a small one when create_web_acl is true."
  type        = string
  default     = null
}

variable "create_web_acl" {
  description = "Create a web ACL (AWS IP reputation list, anonymisers, known bad inputs, per-IP rate limit) when web_acl_arn is null."
  type        = bool
  default     = true
}

variable "waf_rate_limit_per_ip" {
  description = "Requests one IP may send in 5 minutes before the web ACL blocks it (uploads in parts count per part)."
  type        = number
  default     = 10000
}

variable "geo_restriction_type" {
  description = "none, whitelist or blacklist."
  type        = string
  default     = "none"

  validation {
    condition     = contains(["none", "whitelist", "blacklist"], var.geo_restriction_type)
    error_message = "geo_restriction_type must be none, whitelist or blacklist."
  }
}

variable "geo_restriction_locations" {
  description = "ISO 3166-1 alpha-2 country codes for the geo restriction."
  type        = list(string)
  default     = []
}

variable "additional_metrics" {
  description = "Enable CloudFront's additional metrics (403ErrorRate among them), which the failed-signature alarm watches. Billed per metric."
  type        = bool
  default     = true
}
