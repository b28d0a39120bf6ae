"""The alarms carry the thresholds of the original plan, and every alarm notifies someone."""

import pytest

from hcl import block, module, stack

MON = module("monitoring")
ALARMS = MON.resources["aws_cloudwatch_metric_alarm"]
CALL = stack("signed-urls").modules["monitoring"]
PERIOD = MON.locals["period"]


def threshold(alarm):
    """The effective threshold: the module default, unless the stack overrides it."""
    value = alarm["threshold"]
    if isinstance(value, str) and value.startswith("${var."):
        name = value[len("${var."):-1]
        return CALL.get(name, MON.variables[name]["default"])
    return value


def test_the_period_is_five_minutes():
    assert PERIOD == 300


@pytest.mark.parametrize("name,namespace,metric,stat,value", [
    # Lambda errors > 10 in 5 min
    ("lambda_errors", "AWS/Lambda", "Errors", "Sum", 10),
    # API 5xx > 5 in 5 min
    ("api_5xx", "AWS/ApiGateway", "5xx", "Sum", 5),
    # Lambda duration > 10 s (p99, milliseconds)
    ("lambda_duration", "AWS/Lambda", "Duration", "p99", 10000),
    # CloudFront 5xx > 1 % of requests
    ("cloudfront_5xx_rate", "AWS/CloudFront", "5xxErrorRate", "Average", 1),
    # The dead-letter queue is not empty
    ("dead_letters", "AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum", 0),
])
def test_metric_alarm_thresholds(name, namespace, metric, stat, value):
    alarm = ALARMS[name]
    assert alarm["namespace"] == namespace
    assert alarm["metric_name"] == metric
    assert alarm.get("statistic", alarm.get("extended_statistic")) == stat
    assert alarm["period"] == "${local.period}"
    assert alarm["evaluation_periods"] == 1
    assert alarm["comparison_operator"] == "GreaterThanThreshold"
    assert threshold(alarm) == value


def test_lambda_duration_is_in_milliseconds():
    assert MON.variables["lambda_duration_threshold_ms"]["default"] == 10 * 1000


def test_cloudfront_alarms_live_in_us_east_1_with_the_global_region_dimension():
    for name in ("cloudfront_5xx_rate", "cloudfront_403_surge"):
        alarm = ALARMS[name]
        assert alarm["provider"] == "${aws.us_east_1}"
        assert alarm["alarm_actions"] == ["${aws_sns_topic.edge_alarms.arn}"]
    assert ALARMS["cloudfront_5xx_rate"]["dimensions"] == {
        "DistributionId": "${var.distribution_id}", "Region": "Global",
    }
    assert MON.resource("aws_sns_topic", "edge_alarms")["provider"] == "${aws.us_east_1}"


def test_403_surge_is_the_failed_signature_security_alarm():
    alarm = ALARMS["cloudfront_403_surge"]
    queries = {q["id"]: q for q in block(alarm, "metric_query")}
    assert queries["forbidden"]["return_data"] is True
    assert queries["forbidden"]["expression"] == "requests * rate403 / 100"
    assert block(queries["rate403"], "metric")[0]["metric_name"] == "403ErrorRate"
    assert block(queries["requests"], "metric")[0]["metric_name"] == "Requests"
    for query in ("rate403", "requests"):
        assert block(queries[query], "metric")[0]["period"] == "${local.period}"
    assert alarm["comparison_operator"] == "GreaterThanThreshold"
    assert threshold(alarm) == 100
    # 403ErrorRate is one of CloudFront's additional metrics, on by default.
    assert module("cloudfront-distribution").variables["additional_metrics"]["default"] is True
    assert "security" in alarm["alarm_description"]


def test_dynamodb_throttling_alarm_counts_table_and_index_throttles():
    alarm = ALARMS["dynamodb_throttles"]
    assert alarm["comparison_operator"] == "GreaterThanThreshold"
    assert threshold(alarm) == 0
    queries = block(alarm, "dynamic")[0]["metric_query"]["for_each"]
    seen = {(q["metric"], q["dimensions"].get("GlobalSecondaryIndexName")) for q in queries.values()}
    assert seen == {
        ("ReadThrottleEvents", None), ("WriteThrottleEvents", None),
        ("ReadThrottleEvents", "owner-index"), ("WriteThrottleEvents", "owner-index"),
        ("ReadThrottleEvents", "expiry-index"), ("WriteThrottleEvents", "expiry-index"),
    }
    summed = [q for q in block(alarm, "metric_query") if q.get("return_data")]
    assert all(f"FILL({key}, 0)" in summed[0]["expression"] for key in queries)


def test_dead_letter_alarm_watches_the_events_dlq():
    alarm = ALARMS["dead_letters"]
    assert alarm["dimensions"] == {"QueueName": "${var.dead_letter_queue_name}"}
    assert CALL["dead_letter_queue_name"] == "${module.events.dead_letter_queue_name}"


@pytest.mark.parametrize("name", sorted(ALARMS))
def test_every_alarm_notifies_a_topic_and_ignores_missing_data(name):
    alarm = ALARMS[name]
    assert alarm["alarm_actions"] and alarm["ok_actions"]
    assert alarm["treat_missing_data"] == "notBreaching"


def test_topics_are_encrypted_and_the_email_is_optional():
    for topic in MON.resources["aws_sns_topic"].values():
        assert topic["kms_master_key_id"].startswith("${module.topic_key")
    for subscription in MON.resources["aws_sns_topic_subscription"].values():
        assert subscription["count"] == "${var.alarm_email != null ? 1 : 0}"
        assert subscription["protocol"] == "email"
    assert MON.variables["alarm_email"]["default"] is None


def test_budget_and_dashboard():
    budget = MON.resource("aws_budgets_budget", "monthly")
    assert budget["budget_type"] == "COST" and budget["time_unit"] == "MONTHLY"
    kinds = {(n["notification_type"], n["threshold"]) for n in block(budget, "notification")}
    assert kinds == {("ACTUAL", 80), ("FORECASTED", 100)}
    body = MON.resource("aws_cloudwatch_dashboard", "this")["dashboard_body"]
    assert "local.widgets" in body
    widgets = str(MON.locals["widgets"])
    for metric in ("Invocations", "Errors", "Duration", "4xx", "5xx", "Latency", "Requests",
                   "5xxErrorRate", "CacheHitRate", "PutRequests", "ReadThrottleEvents", "GetSecretValue"):
        assert metric in widgets, metric
