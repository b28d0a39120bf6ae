output "queue_arn" {
  description = "ARN of the upload-event queue; available once its policy admits the bucket (S3 checks that when the notification is created)."
  value       = aws_sqs_queue.events.arn

  depends_on = [aws_sqs_queue_policy.events]
}

output "queue_name" {
  description = "Name of the upload-event queue."
  value       = aws_sqs_queue.events.name
}

output "dead_letter_queue_arn" {
  description = "ARN of the dead-letter queue."
  value       = aws_sqs_queue.dead_letters.arn
}

output "dead_letter_queue_name" {
  description = "Name of the dead-letter queue (the DLQ alarm's QueueName)."
  value       = aws_sqs_queue.dead_letters.name
}

output "schedule_arn" {
  description = "ARN of the sweep schedule."
  value       = aws_scheduler_schedule.sweep.arn
}
