variable "name" {
  description = "Name prefix for alarms, topics, the dashboard and the budget, e.g. `keyhole-dev`."
  type        = string
}

variable "function_name" {
  description = "The Keyhole Lambda function."
  type        = string
}

variable "api_id" {
  description = "HTTP API id."
  type        = string
}

variable "api_stage" {
  description = "HTTP API stage name."
  type        = string
  default     = "$default"
}

variable "distribution_id" {
  description = "CloudFront distribution id."
  type        = string
}

variable "table_name" {
  description = "DynamoDB table of file records."
  type        = string
}

variable "bucket_name" {
  description = "Files bucket (its `uploads` request-metrics filter feeds the dashboard)."
  type        = string
}

variable "event_queue_name" {
  description = "SQS queue of upload events."
  type        = string
}

variable "dead_letter_queue_name" {
  description = "Dead-letter queue; any message in it raises an alarm."
  type        = string
}

variable "alarm_email" {
  description = "Address subscribed to the alarm topics (it must confirm the subscription); null: none."
  type        = string
  default     = null
}

variable "monthly_budget_usd" {
  description = "Monthly cost budget for resources tagged Project=<project>; alerts at 80% actual and 100% forecast."
  type        = number
  default     = 100
}

variable "budget_notification_emails" {
  description = "Addresses that receive budget alerts directly (besides the alarm topic)."
  type        = list(string)
  default     = []
}

variable "project_tag" {
  description = "Value of the Project cost-allocation tag the budget filters on (activate the tag in Billing first)."
  type        = string
}

# Thresholds of the original plan. Each alarm looks at one 5-minute period.
variable "lambda_errors_threshold" {
  description = "Lambda errors in 5 minutes above which the alarm fires."
  type        = number
  default     = 10
}

variable "api_5xx_threshold" {
  description = "API 5xx responses in 5 minutes above which the alarm fires."
  type        = number
  default     = 5
}

variable "lambda_duration_threshold_ms" {
  description = "Lambda p99 duration (milliseconds) above which the alarm fires."
  type        = number
  default     = 10000
}

variable "cloudfront_5xx_rate_threshold" {
  description = "CloudFront 5xx error rate (percent of requests) above which the alarm fires."
  type        = number
  default     = 1
}

variable "cloudfront_403_threshold" {
  description = "403 responses in 5 minutes (failed or expired signatures, refused methods) above which the security alarm fires."
  type        = number
  default     = 100
}

variable "dynamodb_throttle_threshold" {
  description = "Throttled DynamoDB requests in 5 minutes above which the alarm fires."
  type        = number
  default     = 0
}

variable "dead_letter_threshold" {
  description = "Messages visible in the dead-letter queue above which the alarm fires (0: not empty)."
  type        = number
  default     = 0
}
