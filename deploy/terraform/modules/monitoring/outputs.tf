output "alarm_topic_arn" {
  description = "SNS topic of the regional alarms and the budget."
  value       = aws_sns_topic.alarms.arn
}

output "edge_alarm_topic_arn" {
  description = "SNS topic (us-east-1) of the CloudFront alarms."
  value       = aws_sns_topic.edge_alarms.arn
}

output "dashboard_name" {
  description = "Name of the CloudWatch dashboard."
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}

output "alarm_names" {
  description = "Every alarm, by purpose."
  value = {
    lambda_errors        = aws_cloudwatch_metric_alarm.lambda_errors.alarm_name
    lambda_duration      = aws_cloudwatch_metric_alarm.lambda_duration.alarm_name
    api_5xx              = aws_cloudwatch_metric_alarm.api_5xx.alarm_name
    cloudfront_5xx_rate  = aws_cloudwatch_metric_alarm.cloudfront_5xx_rate.alarm_name
    cloudfront_403_surge = aws_cloudwatch_metric_alarm.cloudfront_403_surge.alarm_name
    dynamodb_throttles   = aws_cloudwatch_metric_alarm.dynamodb_throttles.alarm_name
    dead_letters         = aws_cloudwatch_metric_alarm.dead_letters.alarm_name
    upload_events_delay  = aws_cloudwatch_metric_alarm.event_age.alarm_name
  }
}
