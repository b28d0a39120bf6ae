# A customer-managed KMS key with rotation and a key policy that names each AWS service allowed
# to use it and, for each, the exact resources on whose behalf it may act (aws:SourceArn).

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  log_group_arns = [
    for pattern in var.cloudwatch_log_group_name_patterns :
    "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${pattern}"
  ]
}

resource "aws_kms_key" "this" {
  description             = var.description
  enable_key_rotation     = true
  rotation_period_in_days = var.rotation_period_in_days
  deletion_window_in_days = var.deletion_window_in_days
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.alias}"
  target_key_id = aws_kms_key.this.key_id
}

# The policy is a separate resource so that it can name a distribution that itself depends on
# a bucket encrypted with this key, without a dependency cycle.
resource "aws_kms_key_policy" "this" {
  key_id = aws_kms_key.this.id
  policy = data.aws_iam_policy_document.key.json
}

data "aws_iam_policy_document" "key" {
  # The account's IAM policies decide who in the account may use the key (the default key
  # policy); without this statement the key could become unmanageable.
  #checkov:skip=CKV_AWS_109:Key policy: Resource "*" means this key only, and the account root statement is what delegates key use to IAM (AWS's default key policy).
  #checkov:skip=CKV_AWS_111:Key policy: Resource "*" means this key only, and the account root statement is what delegates key use to IAM (AWS's default key policy).
  #checkov:skip=CKV_AWS_356:Key policy: Resource "*" means this key only; a key policy cannot name other resources.
  statement {
    sid       = "AccountAdministration"
    effect    = "Allow"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  dynamic "statement" {
    for_each = length(var.cloudfront_distribution_arns) > 0 ? [1] : []
    content {
      sid       = "CloudFrontOriginAccessControl"
      effect    = "Allow"
      actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*"]
      resources = ["*"]

      principals {
        type        = "Service"
        identifiers = ["cloudfront.amazonaws.com"]
      }

      condition {
        test     = "StringEquals"
        variable = "AWS:SourceArn"
        values   = var.cloudfront_distribution_arns
      }
    }
  }

  dynamic "statement" {
    for_each = length(var.s3_notification_bucket_arns) > 0 ? [1] : []
    content {
      sid       = "S3EventNotificationsToEncryptedQueues"
      effect    = "Allow"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = ["*"]

      principals {
        type        = "Service"
        identifiers = ["s3.amazonaws.com"]
      }

      condition {
        test     = "ArnEquals"
        variable = "aws:SourceArn"
        values   = var.s3_notification_bucket_arns
      }

      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [local.account_id]
      }
    }
  }

  dynamic "statement" {
    for_each = length(local.log_group_arns) > 0 ? [1] : []
    content {
      sid       = "CloudWatchLogs"
      effect    = "Allow"
      actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
      resources = ["*"]

      principals {
        type        = "Service"
        identifiers = ["logs.${local.region}.amazonaws.com"]
      }

      condition {
        test     = "ArnLike"
        variable = "kms:EncryptionContext:aws:logs:arn"
        values   = local.log_group_arns
      }
    }
  }

  dynamic "statement" {
    for_each = var.allow_cloudwatch_alarms ? [1] : []
    content {
      sid       = "CloudWatchAlarmsToEncryptedTopics"
      effect    = "Allow"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
      resources = ["*"]

      principals {
        type        = "Service"
        identifiers = ["cloudwatch.amazonaws.com"]
      }

      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [local.account_id]
      }
    }
  }

  dynamic "statement" {
    for_each = var.allow_budgets ? [1] : []
    content {
      sid       = "BudgetsToEncryptedTopics"
      effect    = "Allow"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
      resources = ["*"]

      principals {
        type        = "Service"
        identifiers = ["budgets.amazonaws.com"]
      }

      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [local.account_id]
      }
    }
  }
}
