# The private files bucket. Nothing but one CloudFront distribution (through Origin Access
# Control) and IAM principals of this account can reach it; objects live under one prefix.

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_144:Objects are transient (expired after the retention by Keyhole's sweep and this bucket's lifecycle); a cross-region replica would outlive that expiry and double the data at rest. Durability comes from S3 and versioning.
  bucket        = var.bucket_name
  force_destroy = var.force_destroy
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket                  = aws_s3_bucket.this.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    bucket_key_enabled = true

    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
  }
}

resource "aws_s3_bucket_logging" "this" {
  bucket        = aws_s3_bucket.this.id
  target_bucket = var.access_log_bucket
  target_prefix = "${var.access_log_prefix}${var.bucket_name}/"
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "uploads-retention"
    status = "Enabled"

    filter {
      prefix = var.upload_prefix
    }

    dynamic "expiration" {
      for_each = var.object_expiration_days > 0 ? [var.object_expiration_days] : []
      content {
        days = expiration.value
      }
    }

    dynamic "transition" {
      for_each = var.glacier_transition_days == null ? [] : [var.glacier_transition_days]
      content {
        days          = transition.value
        storage_class = "GLACIER"
      }
    }

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  rule {
    id     = "housekeeping"
    status = "Enabled"

    filter {}

    expiration {
      expired_object_delete_marker = true
    }

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_bucket_cors_configuration" "this" {
  count  = length(var.cors_allowed_origins) > 0 ? 1 : 0
  bucket = aws_s3_bucket.this.id

  cors_rule {
    allowed_methods = ["GET", "HEAD", "PUT"]
    allowed_origins = var.cors_allowed_origins
    allowed_headers = ["Content-Type", "Content-MD5", "Range", "x-amz-checksum-sha256", "x-amz-sdk-checksum-algorithm"]
    expose_headers  = ["ETag", "Content-Length", "Content-Range", "Accept-Ranges"]
    max_age_seconds = 600
  }
}

# Finished uploads: CloudFront writes straight into S3, so no Keyhole process sees a PUT end.
# S3 reports each new object under the prefix to SQS, and the Lambda marks the record uploaded.
resource "aws_s3_bucket_notification" "this" {
  bucket = aws_s3_bucket.this.id

  queue {
    id            = "keyhole-uploads"
    queue_arn     = var.event_queue_arn
    events        = ["s3:ObjectCreated:*"]
    filter_prefix = var.upload_prefix
  }
}

# Request metrics for the upload prefix (4xx/5xx, PUT/GET counts) on the dashboard.
resource "aws_s3_bucket_metric" "uploads" {
  bucket = aws_s3_bucket.this.id
  name   = "uploads"

  filter {
    prefix = var.upload_prefix
  }
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid       = "CloudFrontDownloads"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.this.arn}/${var.upload_prefix}*"]

    principals {
      type        = "Service"
      identifiers = ["cloudfront.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "AWS:SourceArn"
      values   = [var.cloudfront_distribution_arn]
    }
  }

  statement {
    sid    = "CloudFrontUploads"
    effect = "Allow"
    # PutObject covers a whole-file PUT and UploadPart, the only requests the distribution sends
    # to /uploads/*: its function refuses every method there but PUT and OPTIONS, so it never
    # lists parts (GET) or aborts (DELETE); the Lambda does those with its own role.
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.this.arn}/${var.upload_prefix}*"]

    principals {
      type        = "Service"
      identifiers = ["cloudfront.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "AWS:SourceArn"
      values   = [var.cloudfront_distribution_arn]
    }
  }

  # Write-once for what the distribution writes: its function gives every whole-file PUT
  # `If-None-Match: *`, so S3 refuses one onto an object already there (412) instead of replacing
  # it. This makes that hold even without the function: a PutObject that would create the object
  # (not CreateMultipartUpload or UploadPart, which take no conditions) must carry the header.
  # Only the distribution is held to it, so an operator can still copy a previous version back.
  # `require_conditional_puts = false` drops it, should the header not reach S3 (every first PUT
  # through CloudFront would then get 403): the function's header alone still protects.
  dynamic "statement" {
    for_each = var.require_conditional_puts ? ["CloudFrontCreatesOnly"] : []

    content {
      sid       = statement.value
      effect    = "Deny"
      actions   = ["s3:PutObject"]
      resources = ["${aws_s3_bucket.this.arn}/${var.upload_prefix}*"]

      principals {
        type        = "Service"
        identifiers = ["cloudfront.amazonaws.com"]
      }

      condition {
        test     = "Null"
        variable = "s3:if-none-match"
        values   = ["true"]
      }

      condition {
        test     = "Bool"
        variable = "s3:ObjectCreationOperation"
        values   = ["true"]
      }
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.this.arn, "${aws_s3_bucket.this.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid       = "DenyOutdatedTls"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.this.arn, "${aws_s3_bucket.this.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id
  policy = data.aws_iam_policy_document.bucket.json

  depends_on = [aws_s3_bucket_public_access_block.this]
}
