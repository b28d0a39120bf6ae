"""S3 -> SQS -> Lambda marks uploads; a schedule sweeps; failures land in an alarmed DLQ."""

import json
import re

from hcl import ROOT, block, conditions, module, one, principals, stack, statements

EVENTS = module("upload-events")
STACK = stack("signed-urls")
CALL = STACK.modules["events"]


def test_queues_are_encrypted_with_the_stack_key():
    for name in ("events", "dead_letters"):
        queue = EVENTS.resource("aws_sqs_queue", name)
        assert queue["kms_master_key_id"] == "${var.kms_key_arn}"
    assert CALL["kms_key_arn"] == "${module.kms.key_arn}"


def test_failed_events_move_to_the_dead_letter_queue():
    queue = EVENTS.resource("aws_sqs_queue", "events")
    redrive = queue["redrive_policy"]
    assert "aws_sqs_queue.dead_letters.arn" in redrive and "var.max_receive_count" in redrive
    assert 1 < EVENTS.variables["max_receive_count"]["default"] <= 10
    # The Lambda leaves a multipart upload's first COMPLETION_PATIENCE deliveries to the API;
    # the queue must deliver at least once more before dead-lettering.
    source = (ROOT.parents[1] / "crates" / "keyhole-lambda" / "src" / "upload_events.rs").read_text()
    patience = int(re.search(r"pub const COMPLETION_PATIENCE: u32 = (\d+);", source).group(1))
    validation = one(EVENTS.variables["max_receive_count"], "validation")
    assert validation["condition"] == f"${{var.max_receive_count >= {patience + 1}}}", validation
    assert queue["visibility_timeout_seconds"] == "${6 * var.function_timeout_seconds}"
    assert EVENTS.resource("aws_sqs_queue", "dead_letters")["message_retention_seconds"] == "${var.dead_letter_retention_seconds}"
    assert EVENTS.variables["dead_letter_retention_seconds"]["default"] == 14 * 24 * 3600


def test_only_the_files_bucket_may_send_events():
    doc = EVENTS.data["aws_iam_policy_document"]["events"]
    allows = [s for s in statements(doc) if s["effect"] == "Allow"]
    assert len(allows) == 1
    assert principals(allows[0]) == [("Service", ["s3.amazonaws.com"])]
    assert allows[0]["actions"] == ["sqs:SendMessage"]
    assert ("ArnEquals", "aws:SourceArn", ["${var.bucket_arn}"]) in conditions(allows[0])
    assert CALL["bucket_arn"] == "${module.files_bucket.bucket_arn}"


def test_event_source_mapping_reports_partial_batch_failures():
    mapping = EVENTS.resource("aws_lambda_event_source_mapping", "events")
    assert mapping["event_source_arn"] == "${aws_sqs_queue.events.arn}"
    assert mapping["function_response_types"] == ["ReportBatchItemFailures"]
    assert mapping["function_name"] == "${var.function_arn}"
    assert CALL["function_arn"] == "${module.api.alias_arn}"


def test_the_sweep_runs_every_15_minutes_on_the_same_lambda():
    schedule = EVENTS.resource("aws_scheduler_schedule", "sweep")
    assert schedule["schedule_expression"] == "${var.sweep_schedule_expression}"
    assert EVENTS.variables["sweep_schedule_expression"]["default"] == "rate(15 minutes)"
    stack_value = CALL.get("sweep_schedule_expression")
    assert stack_value == "${var.sweep_schedule_expression}"
    assert STACK.variables["sweep_schedule_expression"]["default"] == "rate(15 minutes)"
    assert one(schedule, "flexible_time_window")["mode"] == "OFF"
    assert schedule["state"] == "ENABLED"
    target = one(schedule, "target")
    assert target["arn"] == "${var.function_arn}"
    assert one(target, "dead_letter_config")["arn"] == "${aws_sqs_queue.dead_letters.arn}"
    payload = json.loads(EVENTS.variables["sweep_input"]["default"])
    assert payload["detail"]["task"] == "sweep"


def test_scheduler_role_may_only_invoke_the_function_and_dead_letter():
    doc = EVENTS.data["aws_iam_policy_document"]["scheduler"]
    granted = {(a, r) for s in statements(doc) for a in s["actions"] for r in s["resources"]}
    assert ("lambda:InvokeFunction", "${var.function_arn}") in granted
    assert ("sqs:SendMessage", "${aws_sqs_queue.dead_letters.arn}") in granted
    assert all(r != "*" for _, r in granted)


def test_lambda_may_consume_the_queue_and_write_dead_letters():
    iam = module("integration-role")
    doc = iam.data["aws_iam_policy_document"]["lambda"]
    by_sid = {s["sid"]: s for s in statements(doc)}
    assert by_sid["ConsumeUploadEvents"]["resources"] == ["${var.event_queue_arn}"]
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage"} <= set(by_sid["ConsumeUploadEvents"]["actions"])
    assert by_sid["DeadLetters"]["resources"] == ["${var.dead_letter_queue_arn}"]
    api = module("api").resource("aws_lambda_function", "this")
    assert one(api, "dead_letter_config")["target_arn"] == "${var.dead_letter_queue_arn}"


def test_dead_letter_queue_has_an_alarm():
    assert "dead_letters" in module("monitoring").resources["aws_cloudwatch_metric_alarm"]
