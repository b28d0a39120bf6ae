"""Buckets: the files bucket is private and admits only the distribution through OAC."""

import pytest

from hcl import block, conditions, module, one, principals, stack, statements

FILES = module("s3-bucket")
STACK = stack("signed-urls")

# (module, bucket resource name) of every bucket Keyhole creates.
BUCKETS = [("s3-bucket", "this"), ("access-logs", "this"), ("state-backend", "state")]


def resource_for_bucket(config, rtype, bucket_name):
    matches = [
        body for body in config.resources.get(rtype, {}).values()
        if body.get("bucket") == f"${{aws_s3_bucket.{bucket_name}.id}}"
    ]
    assert len(matches) == 1, f"{config.path.name}: one {rtype} for aws_s3_bucket.{bucket_name}"
    return matches[0]


@pytest.mark.parametrize("module_name,bucket", BUCKETS)
def test_every_bucket_blocks_all_public_access(module_name, bucket):
    config = module(module_name)
    block_ = resource_for_bucket(config, "aws_s3_bucket_public_access_block", bucket)
    for setting in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
        assert block_[setting] is True, f"{module_name}: {setting}"


@pytest.mark.parametrize("module_name,bucket", BUCKETS)
def test_every_bucket_is_versioned_encrypted_and_tls_only(module_name, bucket):
    config = module(module_name)
    versioning = resource_for_bucket(config, "aws_s3_bucket_versioning", bucket)
    assert one(versioning, "versioning_configuration")["status"] == "Enabled"
    sse = resource_for_bucket(config, "aws_s3_bucket_server_side_encryption_configuration", bucket)
    default = one(one(sse, "rule"), "apply_server_side_encryption_by_default")
    assert default["sse_algorithm"] in ("aws:kms", "AES256")
    docs = [
        doc for doc in config.data["aws_iam_policy_document"].values()
        if any(f"aws_s3_bucket.{bucket}.arn" in str(s.get("resources")) for s in statements(doc))
    ]
    denies = [
        s for d in docs for s in statements(d)
        if s.get("effect") == "Deny" and ("Bool", "aws:SecureTransport", ["false"]) in conditions(s)
    ]
    assert denies, f"{module_name}: no DenyInsecureTransport statement"


@pytest.mark.parametrize("module_name,bucket", [("s3-bucket", "this"), ("state-backend", "state")])
def test_data_buckets_enforce_bucket_owner_and_kms(module_name, bucket):
    config = module(module_name)
    ownership = resource_for_bucket(config, "aws_s3_bucket_ownership_controls", bucket)
    assert one(ownership, "rule")["object_ownership"] == "BucketOwnerEnforced"
    sse = resource_for_bucket(config, "aws_s3_bucket_server_side_encryption_configuration", bucket)
    rule = one(sse, "rule")
    assert one(rule, "apply_server_side_encryption_by_default")["sse_algorithm"] == "aws:kms"
    assert rule["bucket_key_enabled"] is True
    logging = resource_for_bucket(config, "aws_s3_bucket_logging", bucket)
    assert logging["target_bucket"]


def test_files_bucket_policy_admits_only_the_distribution_through_oac():
    doc = FILES.data["aws_iam_policy_document"]["bucket"]
    allows = [s for s in statements(doc) if s.get("effect", "Allow") == "Allow"]
    assert allows
    for statement in allows:
        assert principals(statement) == [("Service", ["cloudfront.amazonaws.com"])], statement["sid"]
        assert ("StringEquals", "AWS:SourceArn", ["${var.cloudfront_distribution_arn}"]) in conditions(statement)
        assert statement["resources"] == ["${aws_s3_bucket.this.arn}/${var.upload_prefix}*"]
    # GET/HEAD of /files/{id} and PUT of /uploads/{id} (a whole file or a part) are all the
    # distribution sends: its function refuses the DELETE (abort) and GET (list parts) of uploads.
    actions = {a for s in allows for a in s["actions"]}
    assert actions == {"s3:GetObject", "s3:PutObject"}
    denies = [s for s in statements(doc) if s.get("effect") == "Deny"]
    assert {("Bool", "aws:SecureTransport", ("false",))} <= {
        (t, v, tuple(vals)) for s in denies for (t, v, vals) in conditions(s)
    }
    assert ("NumericLessThan", "s3:TlsVersion", ["1.2"]) in [c for s in denies for c in conditions(s)]
    policy = FILES.resource("aws_s3_bucket_policy", "this")
    assert policy["policy"] == "${data.aws_iam_policy_document.bucket.json}"
    # The stack names the distribution of this environment.
    assert STACK.modules["files_bucket"]["cloudfront_distribution_arn"] == "${module.cdn.distribution_arn}"


def test_files_bucket_refuses_the_distribution_an_unconditional_whole_file_put():
    # Write-once on CloudFront: the function adds `If-None-Match: *` to whole-file PUTs, and the
    # bucket refuses the distribution any object-creating PUT without it, so an upload link used
    # twice can never replace the stored file. Parts (ObjectCreationOperation false) stay allowed.
    doc = FILES.data["aws_iam_policy_document"]["bucket"]
    denies = [
        s for s in statements(doc)
        if s.get("effect") == "Deny" and principals(s) == [("Service", ["cloudfront.amazonaws.com"])]
    ]
    assert len(denies) == 1, "one Deny for the distribution's unconditional writes"
    deny = denies[0]
    assert deny["sid"] in ("CloudFrontCreatesOnly", "${statement.value}")
    assert deny["actions"] == ["s3:PutObject"]
    assert deny["resources"] == ["${aws_s3_bucket.this.arn}/${var.upload_prefix}*"]
    assert sorted(conditions(deny)) == [
        ("Bool", "s3:ObjectCreationOperation", ["true"]),
        ("Null", "s3:if-none-match", ["true"]),
    ]
    # On unless turned off, and the stack lets each environment turn it off.
    dynamic = [d for d in FILES.data["aws_iam_policy_document"]["bucket"].get("dynamic", [])
               if "statement" in d]
    assert [d["statement"]["for_each"] for d in dynamic] == [
        '${var.require_conditional_puts ? ["CloudFrontCreatesOnly"] : []}'
    ]
    assert FILES.variables["require_conditional_puts"]["default"] is True
    assert STACK.modules["files_bucket"]["require_conditional_puts"] == "${var.require_conditional_puts}"


def test_no_acl_or_website_on_the_files_bucket():
    for rtype in ("aws_s3_bucket_acl", "aws_s3_bucket_website_configuration", "aws_s3_bucket_object_lock_configuration"):
        assert rtype not in FILES.resources


def test_lifecycle_expires_uploads_and_aborts_multipart_after_a_day():
    rules = block(FILES.resource("aws_s3_bucket_lifecycle_configuration", "this"), "rule")
    by_id = {r["id"]: r for r in rules}
    uploads = by_id["uploads-retention"]
    assert one(uploads, "filter")["prefix"] == "${var.upload_prefix}"
    assert block(uploads, "dynamic")[0]["expiration"]["for_each"]
    for rule in rules:
        assert rule["status"] == "Enabled"
        assert one(rule, "abort_incomplete_multipart_upload")["days_after_initiation"] == 1
    assert any("transition" in d for d in block(uploads, "dynamic")), "optional Glacier transition"


def test_upload_events_notification_filters_the_upload_prefix():
    notification = FILES.resource("aws_s3_bucket_notification", "this")
    queues = block(notification, "queue")
    assert len(queues) == 1
    assert queues[0]["filter_prefix"] == "${var.upload_prefix}"
    assert queues[0]["events"] == ["s3:ObjectCreated:*"]
    assert queues[0]["queue_arn"] == "${var.event_queue_arn}"
    assert FILES.variables["upload_prefix"]["default"] == "uploads/"
    call = STACK.modules["files_bucket"]
    assert call["upload_prefix"] == "${local.upload_prefix}"
    assert STACK.locals["upload_prefix"] == "uploads/"
    # The queue is the events module's, after S3 may use its key.
    assert call["event_queue_arn"] == "${terraform_data.event_queue_ready.output}"
    ready = STACK.resource("terraform_data", "event_queue_ready")
    assert ready["input"] == "${module.events.queue_arn}"
    assert ready["depends_on"] == ["${module.kms}"]


def test_kms_key_admits_the_distribution_and_s3_events_only_for_this_environment():
    call = STACK.modules["kms"]
    assert call["cloudfront_distribution_arns"] == ["${module.cdn.distribution_arn}"]
    assert call["s3_notification_bucket_arns"] == ["${module.files_bucket.bucket_arn}"]
    key = module("kms-key")
    assert key.resource("aws_kms_key", "this")["enable_key_rotation"] is True
    for statement in statements(key.data["aws_iam_policy_document"]["key"]):
        kinds = [t for t, _ in principals(statement)]
        if "Service" in kinds:
            assert conditions(statement), f"{statement['sid']}: a service principal needs a condition"
