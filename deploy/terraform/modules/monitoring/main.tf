# Alarms, their topics, a dashboard and a cost budget for one Keyhole environment.
#
# CloudFront metrics exist only in us-east-1, and an alarm can notify only a topic of its own
# region: CloudFront alarms therefore go to a second topic there. Both topics are encrypted with
# customer-managed keys whose policies admit CloudWatch (and Budgets) to publish.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

locals {
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id
  period     = 300
}

# --- topics ---

module "topic_key" {
  source = "../kms-key"

  alias                   = "${var.name}-alarms"
  description             = "Keyhole ${var.name} alarm and budget notifications"
  allow_cloudwatch_alarms = true
  allow_budgets           = true
}

module "topic_key_us_east_1" {
  source    = "../kms-key"
  providers = { aws = aws.us_east_1 }

  alias                   = "${var.name}-edge-alarms"
  description             = "Keyhole ${var.name} CloudFront alarm notifications"
  allow_cloudwatch_alarms = true
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  display_name      = "Keyhole ${var.name} alarms"
  kms_master_key_id = module.topic_key.key_arn
}

resource "aws_sns_topic" "edge_alarms" {
  provider = aws.us_east_1

  name              = "${var.name}-edge-alarms"
  display_name      = "Keyhole ${var.name} edge alarms"
  kms_master_key_id = module.topic_key_us_east_1.key_arn
}

data "aws_iam_policy_document" "alarms" {
  statement {
    sid       = "CloudWatchAndBudgetsPublish"
    effect    = "Allow"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com", "budgets.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]

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

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.alarms.json
}

data "aws_iam_policy_document" "edge_alarms" {
  statement {
    sid       = "CloudWatchPublish"
    effect    = "Allow"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.edge_alarms.arn]

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

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.edge_alarms.arn]

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

resource "aws_sns_topic_policy" "edge_alarms" {
  provider = aws.us_east_1

  arn    = aws_sns_topic.edge_alarms.arn
  policy = data.aws_iam_policy_document.edge_alarms.json
}

resource "aws_sns_topic_subscription" "email" {
  count = var.alarm_email != null ? 1 : 0

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

resource "aws_sns_topic_subscription" "edge_email" {
  count    = var.alarm_email != null ? 1 : 0
  provider = aws.us_east_1

  topic_arn = aws_sns_topic.edge_alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

# --- alarms: the API and its function ---

resource "aws_cloudwatch_metric_alarm" "lambda_errors" {
  alarm_name          = "${var.name}-lambda-errors"
  alarm_description   = "Keyhole Lambda: more than ${var.lambda_errors_threshold} errors in 5 minutes"
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = var.function_name }
  statistic           = "Sum"
  period              = local.period
  evaluation_periods  = 1
  threshold           = var.lambda_errors_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "lambda_duration" {
  alarm_name          = "${var.name}-lambda-duration"
  alarm_description   = "Keyhole Lambda: p99 duration above ${var.lambda_duration_threshold_ms / 1000} s over 5 minutes"
  namespace           = "AWS/Lambda"
  metric_name         = "Duration"
  dimensions          = { FunctionName = var.function_name }
  extended_statistic  = "p99"
  period              = local.period
  evaluation_periods  = 1
  threshold           = var.lambda_duration_threshold_ms
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "api_5xx" {
  alarm_name          = "${var.name}-api-5xx"
  alarm_description   = "Keyhole API: more than ${var.api_5xx_threshold} 5xx responses in 5 minutes"
  namespace           = "AWS/ApiGateway"
  metric_name         = "5xx"
  dimensions          = { ApiId = var.api_id, Stage = var.api_stage }
  statistic           = "Sum"
  period              = local.period
  evaluation_periods  = 1
  threshold           = var.api_5xx_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# --- alarms: the edge (us-east-1) ---

resource "aws_cloudwatch_metric_alarm" "cloudfront_5xx_rate" {
  provider = aws.us_east_1

  alarm_name          = "${var.name}-cloudfront-5xx-rate"
  alarm_description   = "Keyhole edge: 5xx error rate above ${var.cloudfront_5xx_rate_threshold}% over 5 minutes"
  namespace           = "AWS/CloudFront"
  metric_name         = "5xxErrorRate"
  dimensions          = { DistributionId = var.distribution_id, Region = "Global" }
  statistic           = "Average"
  period              = local.period
  evaluation_periods  = 1
  threshold           = var.cloudfront_5xx_rate_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.edge_alarms.arn]
  ok_actions          = [aws_sns_topic.edge_alarms.arn]
}

# Security alarm: a surge of 403s means links failing their signature check (forged, tampered or
# expired), refused methods, or someone probing paths. The count is Requests x 403ErrorRate
# (an additional CloudFront metric), so a quiet distribution with one refused link stays quiet.
resource "aws_cloudwatch_metric_alarm" "cloudfront_403_surge" {
  provider = aws.us_east_1

  alarm_name          = "${var.name}-cloudfront-403-surge"
  alarm_description   = "Keyhole edge security: more than ${var.cloudfront_403_threshold} refused (403) requests in 5 minutes - failed signatures or probing"
  evaluation_periods  = 1
  threshold           = var.cloudfront_403_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.edge_alarms.arn]
  ok_actions          = [aws_sns_topic.edge_alarms.arn]

  metric_query {
    id          = "forbidden"
    expression  = "requests * rate403 / 100"
    label       = "403 responses"
    return_data = true
  }

  metric_query {
    id = "requests"
    metric {
      namespace   = "AWS/CloudFront"
      metric_name = "Requests"
      dimensions  = { DistributionId = var.distribution_id, Region = "Global" }
      stat        = "Sum"
      period      = local.period
    }
  }

  metric_query {
    id = "rate403"
    metric {
      namespace   = "AWS/CloudFront"
      metric_name = "403ErrorRate"
      dimensions  = { DistributionId = var.distribution_id, Region = "Global" }
      stat        = "Average"
      period      = local.period
    }
  }
}

# --- alarms: metadata and events ---

resource "aws_cloudwatch_metric_alarm" "dynamodb_throttles" {
  alarm_name          = "${var.name}-dynamodb-throttles"
  alarm_description   = "Keyhole metadata: DynamoDB throttled requests (table, owner-index or expiry-index) in 5 minutes"
  evaluation_periods  = 1
  threshold           = var.dynamodb_throttle_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "throttles"
    expression  = "FILL(tr, 0) + FILL(tw, 0) + FILL(ir, 0) + FILL(iw, 0) + FILL(er, 0) + FILL(ew, 0)"
    label       = "Throttle events"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = {
      tr = { metric = "ReadThrottleEvents", dimensions = { TableName = var.table_name } }
      tw = { metric = "WriteThrottleEvents", dimensions = { TableName = var.table_name } }
      ir = { metric = "ReadThrottleEvents", dimensions = { TableName = var.table_name, GlobalSecondaryIndexName = "owner-index" } }
      iw = { metric = "WriteThrottleEvents", dimensions = { TableName = var.table_name, GlobalSecondaryIndexName = "owner-index" } }
      er = { metric = "ReadThrottleEvents", dimensions = { TableName = var.table_name, GlobalSecondaryIndexName = "expiry-index" } }
      ew = { metric = "WriteThrottleEvents", dimensions = { TableName = var.table_name, GlobalSecondaryIndexName = "expiry-index" } }
    }
    content {
      id = metric_query.key
      metric {
        namespace   = "AWS/DynamoDB"
        metric_name = metric_query.value.metric
        dimensions  = metric_query.value.dimensions
        stat        = "Sum"
        period      = local.period
      }
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  alarm_name          = "${var.name}-dead-letters"
  alarm_description   = "Keyhole events: the dead-letter queue is not empty (upload events or sweeps that failed repeatedly)"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = var.dead_letter_queue_name }
  statistic           = "Maximum"
  period              = local.period
  evaluation_periods  = 1
  threshold           = var.dead_letter_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "event_age" {
  alarm_name          = "${var.name}-upload-events-delayed"
  alarm_description   = "Keyhole events: an upload event has waited over 15 minutes, so finished uploads stay pending"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = var.event_queue_name }
  statistic           = "Maximum"
  period              = local.period
  evaluation_periods  = 1
  threshold           = 900
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# --- dashboard ---

locals {
  lambda_dims = ["FunctionName", var.function_name]
  api_dims    = ["ApiId", var.api_id, "Stage", var.api_stage]
  cf_dims     = ["DistributionId", var.distribution_id, "Region", "Global"]
  s3_dims     = ["BucketName", var.bucket_name, "FilterId", "uploads"]

  widgets = [
    { title = "Lambda invocations and errors", region = local.region, metrics = [
      concat(["AWS/Lambda", "Invocations"], local.lambda_dims, [{ stat = "Sum" }]),
      concat(["AWS/Lambda", "Errors"], local.lambda_dims, [{ stat = "Sum" }]),
      concat(["AWS/Lambda", "Throttles"], local.lambda_dims, [{ stat = "Sum" }]),
    ] },
    { title = "Lambda duration (ms)", region = local.region, metrics = [
      concat(["AWS/Lambda", "Duration"], local.lambda_dims, [{ stat = "p50" }]),
      concat(["AWS/Lambda", "Duration"], local.lambda_dims, [{ stat = "p99" }]),
      concat(["AWS/Lambda", "Duration"], local.lambda_dims, [{ stat = "Maximum" }]),
    ] },
    { title = "API requests, 4xx, 5xx", region = local.region, metrics = [
      concat(["AWS/ApiGateway", "Count"], local.api_dims, [{ stat = "Sum" }]),
      concat(["AWS/ApiGateway", "4xx"], local.api_dims, [{ stat = "Sum" }]),
      concat(["AWS/ApiGateway", "5xx"], local.api_dims, [{ stat = "Sum" }]),
    ] },
    { title = "API latency (ms)", region = local.region, metrics = [
      concat(["AWS/ApiGateway", "Latency"], local.api_dims, [{ stat = "p50" }]),
      concat(["AWS/ApiGateway", "Latency"], local.api_dims, [{ stat = "p99" }]),
      concat(["AWS/ApiGateway", "IntegrationLatency"], local.api_dims, [{ stat = "p99" }]),
    ] },
    { title = "CloudFront requests", region = "us-east-1", metrics = [
      concat(["AWS/CloudFront", "Requests"], local.cf_dims, [{ stat = "Sum" }]),
      concat(["AWS/CloudFront", "BytesDownloaded"], local.cf_dims, [{ stat = "Sum", yAxis = "right" }]),
      concat(["AWS/CloudFront", "BytesUploaded"], local.cf_dims, [{ stat = "Sum", yAxis = "right" }]),
    ] },
    { title = "CloudFront error rates (%) and cache hit ratio", region = "us-east-1", metrics = [
      concat(["AWS/CloudFront", "4xxErrorRate"], local.cf_dims, [{ stat = "Average" }]),
      concat(["AWS/CloudFront", "403ErrorRate"], local.cf_dims, [{ stat = "Average" }]),
      concat(["AWS/CloudFront", "5xxErrorRate"], local.cf_dims, [{ stat = "Average" }]),
      concat(["AWS/CloudFront", "CacheHitRate"], local.cf_dims, [{ stat = "Average", yAxis = "right" }]),
    ] },
    { title = "S3 uploads prefix: requests and errors", region = local.region, metrics = [
      concat(["AWS/S3", "PutRequests"], local.s3_dims, [{ stat = "Sum" }]),
      concat(["AWS/S3", "GetRequests"], local.s3_dims, [{ stat = "Sum" }]),
      concat(["AWS/S3", "4xxErrors"], local.s3_dims, [{ stat = "Sum" }]),
      concat(["AWS/S3", "5xxErrors"], local.s3_dims, [{ stat = "Sum" }]),
    ] },
    { title = "DynamoDB throttles and latency", region = local.region, metrics = [
      ["AWS/DynamoDB", "ReadThrottleEvents", "TableName", var.table_name, { stat = "Sum" }],
      ["AWS/DynamoDB", "WriteThrottleEvents", "TableName", var.table_name, { stat = "Sum" }],
      ["AWS/DynamoDB", "ConsumedWriteCapacityUnits", "TableName", var.table_name, { stat = "Sum", yAxis = "right" }],
    ] },
    { title = "Upload events and dead letters", region = local.region, metrics = [
      ["AWS/SQS", "NumberOfMessagesReceived", "QueueName", var.event_queue_name, { stat = "Sum" }],
      ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", var.event_queue_name, { stat = "Maximum", yAxis = "right" }],
      ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.dead_letter_queue_name, { stat = "Maximum" }],
    ] },
    { title = "Secrets Manager GetSecretValue calls", region = local.region, metrics = [
      ["AWS/Usage", "CallCount", "Type", "API", "Resource", "GetSecretValue", "Service", "Secrets Manager", "Class", "None", { stat = "Sum" }],
    ] },
  ]
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = [
      for index, widget in local.widgets : {
        type   = "metric"
        x      = (index % 2) * 12
        y      = floor(index / 2) * 6
        width  = 12
        height = 6
        properties = {
          title   = widget.title
          region  = widget.region
          metrics = widget.metrics
          period  = local.period
          view    = "timeSeries"
          stacked = false
        }
      }
    ]
  })
}

# --- cost ---

resource "aws_budgets_budget" "monthly" {
  name         = "${var.name}-monthly"
  budget_type  = "COST"
  limit_amount = format("%.2f", var.monthly_budget_usd)
  limit_unit   = "USD"
  time_unit    = "MONTHLY"

  cost_filter {
    name   = "TagKeyValue"
    values = [format("user:Project$%s", var.project_tag)]
  }

  notification {
    comparison_operator        = "GREATER_THAN"
    threshold                  = 80
    threshold_type             = "PERCENTAGE"
    notification_type          = "ACTUAL"
    subscriber_sns_topic_arns  = [aws_sns_topic.alarms.arn]
    subscriber_email_addresses = var.budget_notification_emails
  }

  notification {
    comparison_operator        = "GREATER_THAN"
    threshold                  = 100
    threshold_type             = "PERCENTAGE"
    notification_type          = "FORECASTED"
    subscriber_sns_topic_arns  = [aws_sns_topic.alarms.arn]
    subscriber_email_addresses = var.budget_notification_emails
  }

  # Budgets must be able to publish (topic policy) and encrypt (key policy) from the start.
  depends_on = [aws_sns_topic_policy.alarms, module.topic_key]
}
