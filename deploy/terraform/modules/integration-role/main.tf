# Least-privilege IAM for Keyhole on AWS:
#  - the Lambda's execution role: its own log group, the signing-key secret, the file table and
#    its indexes, the bucket's upload prefix, the event queue and the dead-letter queue;
#  - a signer policy (and, when principals are given, a role) for applications that sign links
#    themselves: read the signing-key secret, nothing else.
# Data-plane statements require TLS (aws:SecureTransport) and KMS use is limited to calls made
# through the services that need it (kms:ViaService).

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  log_group_arn = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/lambda/${var.function_name}"
  via_services  = [for service in ["secretsmanager", "s3", "dynamodb", "sqs", "lambda"] : "${service}.${local.region}.amazonaws.com"]
}

# --- Lambda execution role ---

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "lambda" {
  name                 = "${var.name}-lambda"
  description          = "Keyhole API, S3 upload events and sweeps"
  assume_role_policy   = data.aws_iam_policy_document.lambda_assume.json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "lambda" {
  statement {
    sid       = "OwnLogGroup"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${local.log_group_arn}:*"]
  }

  # The key is read with GetSecretValue only (crates/keyhole/src/keys/secrets.rs).
  statement {
    sid       = "ReadSigningKey"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.secret_arn]

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["true"]
    }
  }

  # What the DynamoDB store calls (crates/keyhole/src/store/dynamodb.rs): items, their batches,
  # the owner-index and expiry-index queries, and TransactWriteItems of an Update and a Put (a
  # part and its record), which needs UpdateItem and PutItem. No DescribeTable or
  # DescribeTimeToLive: the store reads the table's description only when it is asked to create
  # the table (KEYHOLE_DYNAMODB_CREATE_TABLE), which Terraform, the table's owner, never sets.
  statement {
    sid = "FileRecords"
    actions = [
      "dynamodb:GetItem",
      "dynamodb:BatchGetItem",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
      "dynamodb:BatchWriteItem",
      "dynamodb:Query",
    ]
    resources = [var.table_arn, "${var.table_arn}/index/*"]

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["true"]
    }
  }

  statement {
    sid = "ObjectsUnderPrefix"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      # Undoes a second PUT over an uploaded file (upload events): removes the version it made.
      "s3:DeleteObjectVersion",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${var.bucket_arn}/${var.object_prefix}*"]

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["true"]
    }
  }

  # Listing the prefix (the readiness probe lists it). S3 also answers a HEAD or GET of a missing
  # key 404 rather than 403 only to a caller with s3:ListBucket; Keyhole needs that 404 (removing
  # an upload never sent checks whether its object exists). AWS does not document whether this
  # prefix-conditioned grant counts for that check: the smoke test in docs/deployment.md
  # verifies it (DELETE of a file never uploaded must succeed).
  statement {
    sid       = "ListPrefix"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [var.object_prefix, "${var.object_prefix}*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["true"]
    }
  }

  statement {
    sid = "ConsumeUploadEvents"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
    ]
    resources = [var.event_queue_arn]
  }

  statement {
    sid       = "DeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [var.dead_letter_queue_arn]
  }

  statement {
    sid       = "KeyThroughServices"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = local.via_services
    }
  }
}

resource "aws_iam_role_policy" "lambda" {
  name   = "keyhole"
  role   = aws_iam_role.lambda.id
  policy = data.aws_iam_policy_document.lambda.json
}

resource "aws_iam_role_policy_attachment" "lambda_xray" {
  role       = aws_iam_role.lambda.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"
}

# --- applications that sign links themselves ---

data "aws_iam_policy_document" "signer" {
  # DescribeSecret (metadata, never the key) because the Secrets Manager caching clients such
  # applications often use call it to learn that a new version is current.
  statement {
    sid       = "ReadSigningKey"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [var.secret_arn]

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["true"]
    }
  }

  statement {
    sid       = "DecryptSigningKey"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_policy" "signer" {
  name        = "${var.name}-signer"
  description = "Read the Keyhole signing key to mint CloudFront signed links"
  policy      = data.aws_iam_policy_document.signer.json
}

data "aws_iam_policy_document" "signer_assume" {
  count = length(var.signer_principal_arns) > 0 ? 1 : 0

  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "AWS"
      identifiers = var.signer_principal_arns
    }

    dynamic "condition" {
      for_each = var.signer_external_id == null ? [] : [var.signer_external_id]
      content {
        test     = "StringEquals"
        variable = "sts:ExternalId"
        values   = [condition.value]
      }
    }
  }
}

resource "aws_iam_role" "signer" {
  count = length(var.signer_principal_arns) > 0 ? 1 : 0

  name                 = "${var.name}-signer"
  description          = "Applications that sign Keyhole links themselves"
  assume_role_policy   = data.aws_iam_policy_document.signer_assume[0].json
  max_session_duration = 3600
}

resource "aws_iam_role_policy_attachment" "signer" {
  count = length(var.signer_principal_arns) > 0 ? 1 : 0

  role       = aws_iam_role.signer[0].name
  policy_arn = aws_iam_policy.signer.arn
}
