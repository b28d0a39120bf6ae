# The AWS shape's event flow:
#   S3 ObjectCreated (uploads/ prefix) -> SQS queue -> Lambda (marks the record uploaded)
#                                              \-> dead-letter queue after max_receive_count
#   EventBridge Scheduler, every 15 minutes    -> Lambda (sweeps expired objects and records)
#                                              \-> dead-letter queue when the invocation fails
# The bucket's notification itself lives in the s3-bucket module (one per bucket).

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

# --- queues ---

resource "aws_sqs_queue" "dead_letters" {
  name                              = "${var.name}-events-dlq"
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = 3600
  message_retention_seconds         = var.dead_letter_retention_seconds
}

resource "aws_sqs_queue" "events" {
  name                              = "${var.name}-upload-events"
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = 3600
  visibility_timeout_seconds        = 6 * var.function_timeout_seconds
  message_retention_seconds         = 345600
  receive_wait_time_seconds         = 20

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead_letters.arn
    maxReceiveCount     = var.max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "dead_letters" {
  queue_url = aws_sqs_queue.dead_letters.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.events.arn]
  })
}

data "aws_iam_policy_document" "events" {
  statement {
    sid       = "S3UploadEvents"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.events.arn]

    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [var.bucket_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.events.arn]

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
}

resource "aws_sqs_queue_policy" "events" {
  queue_url = aws_sqs_queue.events.id
  policy    = data.aws_iam_policy_document.events.json
}

data "aws_iam_policy_document" "dead_letters" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.dead_letters.arn]

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
}

resource "aws_sqs_queue_policy" "dead_letters" {
  queue_url = aws_sqs_queue.dead_letters.id
  policy    = data.aws_iam_policy_document.dead_letters.json
}

# --- queue -> Lambda ---

# ReportBatchItemFailures: the Lambda names the messages it could not handle, so one bad event
# is retried (and dead-lettered) alone instead of failing its whole batch.
resource "aws_lambda_event_source_mapping" "events" {
  event_source_arn        = aws_sqs_queue.events.arn
  function_name           = var.function_arn
  batch_size              = var.batch_size
  function_response_types = ["ReportBatchItemFailures"]
  enabled                 = true

  scaling_config {
    maximum_concurrency = var.maximum_concurrency
  }
}

# --- schedule -> Lambda ---

data "aws_iam_policy_document" "scheduler_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  name                 = "${var.name}-sweep-scheduler"
  description          = "EventBridge Scheduler invoking the Keyhole sweep"
  assume_role_policy   = data.aws_iam_policy_document.scheduler_assume.json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "InvokeSweep"
    actions   = ["lambda:InvokeFunction"]
    resources = [var.function_arn]
  }

  statement {
    sid       = "DeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dead_letters.arn]
  }

  statement {
    sid       = "EncryptedScheduleAndQueue"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "sweep"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}

resource "aws_scheduler_schedule" "sweep" {
  name                         = "${var.name}-sweep"
  description                  = "Delete expired Keyhole objects and records together"
  group_name                   = "default"
  schedule_expression          = var.sweep_schedule_expression
  schedule_expression_timezone = "UTC"
  kms_key_arn                  = var.kms_key_arn
  state                        = "ENABLED"

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = var.function_arn
    role_arn = aws_iam_role.scheduler.arn
    input    = var.sweep_input

    # The sweep is idempotent and the next run comes soon: retry briefly, then dead-letter.
    retry_policy {
      maximum_event_age_in_seconds = 600
      maximum_retry_attempts       = 2
    }

    dead_letter_config {
      arn = aws_sqs_queue.dead_letters.arn
    }
  }

  depends_on = [aws_iam_role_policy.scheduler]
}
