variable "name" {
  description = "Name prefix for roles and policies, e.g. `keyhole-dev`."
  type        = string
}

variable "function_name" {
  description = "Name of the Lambda function; its log group /aws/lambda/NAME is the only one it may write to."
  type        = string
}

variable "secret_arn" {
  description = "The signing-key secret: the only secret readable."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key protecting the secret, table, bucket and queues."
  type        = string
}

variable "table_arn" {
  description = "The file-record table: the only table reachable (with its indexes)."
  type        = string
}

variable "bucket_arn" {
  description = "The files bucket."
  type        = string
}

variable "object_prefix" {
  description = "The only key prefix reachable in the bucket."
  type        = string
  default     = "uploads/"
}

variable "event_queue_arn" {
  description = "SQS queue of S3 upload events the Lambda consumes."
  type        = string
}

variable "dead_letter_queue_arn" {
  description = "Dead-letter queue the Lambda sends failed asynchronous invocations to."
  type        = string
}

variable "signer_principal_arns" {
  description = "IAM principals (roles or accounts) of applications allowed to assume the signer role, which may read the signing key to mint links themselves. Empty: no signer role."
  type        = list(string)
  default     = []
}

variable "signer_external_id" {
  description = "External id required from principals of other accounts assuming the signer role (null: not required)."
  type        = string
  default     = null
}
