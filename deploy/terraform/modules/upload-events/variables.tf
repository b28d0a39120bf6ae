variable "name" {
  description = "Name prefix for the queues, schedule and role, e.g. `keyhole-dev`."
  type        = string
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for the queues and the schedule (its policy must admit S3 notifications from the bucket)."
  type        = string
}

variable "bucket_arn" {
  description = "The files bucket whose ObjectCreated events feed the queue (queue policy aws:SourceArn)."
  type        = string
}

variable "function_arn" {
  description = "Qualified ARN (alias) of the Keyhole Lambda that consumes events and runs sweeps."
  type        = string
}

variable "function_timeout_seconds" {
  description = "The Lambda's timeout; the queue's visibility timeout is six times this, as AWS recommends for event source mappings."
  type        = number
  default     = 30
}

variable "max_receive_count" {
  description = "Receives after which an event moves to the dead-letter queue (at least 3: a multipart upload's event waits two deliveries for the API to record it)."
  type        = number
  default     = 5

  validation {
    condition     = var.max_receive_count >= 3
    error_message = "max_receive_count must be at least 3: the Lambda leaves a multipart upload's first two events to the API (COMPLETION_PATIENCE)."
  }
}

variable "batch_size" {
  description = "Events per Lambda invocation."
  type        = number
  default     = 10
}

variable "maximum_concurrency" {
  description = "Upper bound on concurrent Lambda invocations the queue drives (2-1000)."
  type        = number
  default     = 20

  validation {
    condition     = var.maximum_concurrency >= 2 && var.maximum_concurrency <= 1000
    error_message = "maximum_concurrency must be between 2 and 1000."
  }
}

variable "sweep_schedule_expression" {
  description = "When the sweep runs (EventBridge Scheduler expression)."
  type        = string
  default     = "rate(15 minutes)"
}

variable "sweep_input" {
  description = "JSON the schedule sends to the Lambda; the Lambda recognises it as a sweep request."
  type        = string
  default     = "{\"source\":\"keyhole.scheduler\",\"detail-type\":\"Keyhole Sweep\",\"detail\":{\"task\":\"sweep\"}}"
}

variable "dead_letter_retention_seconds" {
  description = "How long failed events stay in the dead-letter queue (the maximum, 14 days, by default)."
  type        = number
  default     = 1209600
}
