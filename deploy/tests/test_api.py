"""The API: the Lambda from the build script's zip, the contract's routes, throttling, logs."""

import re
import subprocess
import tarfile
from pathlib import Path

from hcl import ROOT, block, conditions, load_dir, module, one, stack, statements

API = module("api")
FUNCTION = API.resource("aws_lambda_function", "this")
STACK = stack("signed-urls")
CALL = STACK.modules["api"]
REPO = ROOT.parents[1]

CONTRACT_ROUTES = {
    "POST /api/files/upload",
    "GET /api/files/download/{fileId}",
    "GET /api/files",
    "GET /api/files/{fileId}",
    "DELETE /api/files/{fileId}",
    "GET /api/files/{fileId}/parts",
    "POST /api/files/{fileId}/complete",
    "GET /api/config",
}


def test_lambda_runs_the_cargo_lambda_zip_on_al2023():
    assert FUNCTION["runtime"] == "provided.al2023"
    assert FUNCTION["handler"] == "bootstrap"
    assert FUNCTION["filename"] == "${local.package_from_s3 ? null : var.lambda_zip}"
    assert FUNCTION["source_code_hash"] == "${local.package_from_s3 ? null : filebase64sha256(var.lambda_zip)}"
    assert FUNCTION["memory_size"] == "${var.memory_mb}"
    assert CALL["memory_mb"] == "${var.lambda_memory_mb}"
    default = "../../../../target/lambda/keyhole-lambda/bootstrap.zip"
    assert API.variables["lambda_zip"]["default"] == default
    assert STACK.variables["lambda_zip"]["default"] == default
    # Terraform runs in the stack directory: the path lands in the workspace's target/.
    resolved = (ROOT / "stacks" / "signed-urls" / default).resolve()
    assert resolved == REPO / "target" / "lambda" / "keyhole-lambda" / "bootstrap.zip"


def test_the_lambda_package_may_come_from_s3_instead():
    # Service Catalog products and pipelines deploy a published artifact; the local zip is then
    # never read (filebase64sha256 sits in the branch not taken).
    assert API.locals["package_from_s3"] == "${var.lambda_s3_bucket != null}"
    assert FUNCTION["s3_bucket"] == "${var.lambda_s3_bucket}"
    assert FUNCTION["s3_key"] == "${var.lambda_s3_key}"
    assert FUNCTION["s3_object_version"] == "${var.lambda_s3_object_version}"
    for name in ("lambda_s3_bucket", "lambda_s3_key", "lambda_s3_object_version"):
        assert API.variables[name]["default"] is None
        assert STACK.variables[name]["default"] is None
        assert CALL[name] == f"${{var.{name}}}"
    conditions = [v["condition"] for name in ("lambda_s3_bucket", "lambda_s3_key", "lambda_s3_object_version")
                  for v in API.variables[name]["validation"]]
    assert "${var.lambda_s3_bucket != null || var.lambda_zip != null}" in conditions
    assert "${(var.lambda_s3_bucket == null) == (var.lambda_s3_key == null)}" in conditions


def package(tmp_path, *extra):
    out = tmp_path / "archives"
    subprocess.run(
        ["bash", str(REPO / "deploy" / "scripts" / "package-products.sh"), "v1.2.3", str(out), *extra],
        check=True, capture_output=True,
    )
    root = tmp_path / "unpacked"
    root.mkdir()
    with tarfile.open(out / "keyhole-signed-urls-v1.2.3.tar.gz") as archive:
        archive.extractall(root, filter="data")
    return load_dir(root)


def test_the_product_takes_its_lambda_from_s3(tmp_path):
    # The archive has no build tree: the stack's default zip path would not exist at launch.
    product = package(tmp_path / "plain")
    assert product.variables["lambda_zip"]["default"] is None
    assert product.variables["lambda_s3_bucket"]["default"] is None
    # A release's artifact becomes the product version's default: launching deploys that build.
    pinned = package(tmp_path / "pinned", "s3://keyhole-artifacts-555555555555/keyhole-lambda/v1.2.3/bootstrap.zip")
    assert pinned.variables["lambda_zip"]["default"] is None
    assert pinned.variables["lambda_s3_bucket"]["default"] == "keyhole-artifacts-555555555555"
    assert pinned.variables["lambda_s3_key"]["default"] == "keyhole-lambda/v1.2.3/bootstrap.zip"
    assert pinned.variables["lambda_s3_object_version"]["default"] is None
    assert pinned.modules["api"]["lambda_s3_bucket"] == "${var.lambda_s3_bucket}"
    refused = subprocess.run(
        ["bash", str(REPO / "deploy" / "scripts" / "package-products.sh"), "v1", str(tmp_path / "x"), "s3://Not_A_Bucket/k"],
        capture_output=True,
    )
    assert refused.returncode != 0


def test_lambda_environment_names_its_backends():
    env = API.locals["environment"]
    for expected in (
        "KEYHOLE_PUBLIC_URL  = var.public_url",
        'KEYHOLE_METADATA    = "dynamodb://${var.table_name}"',
        "KEYHOLE_STORAGE     = var.storage_url",
        'KEYHOLE_KEY         = "secretsmanager://${var.secret_arn}"',
    ):
        assert expected.replace(" ", "") in env.replace(" ", ""), expected
    # The key pair id travels with the key, in the secret: an id in the environment would pair a
    # rolled-back version's id with the secret's current key.
    assert "KEYHOLE_KEY_PAIR_ID" not in env
    assert CALL["storage_url"] == "s3://${module.files_bucket.bucket_id}"
    assert CALL["public_url"] == "${local.public_url}"
    assert STACK.locals["public_url"] == "https://${var.files_domain}"
    assert one(FUNCTION, "environment")["variables"] == "${local.environment}"
    assert FUNCTION["kms_key_arn"] == "${var.kms_key_arn}"


def test_the_contract_routes_are_all_there():
    routes = set(API.locals["routes"])
    assert CONTRACT_ROUTES <= routes
    route = API.resource("aws_apigatewayv2_route", "this")
    assert route["for_each"] == "${local.routes}"
    assert route["route_key"] == "${each.key}"


def test_throttling_cors_and_json_access_logs():
    stage = API.resource("aws_apigatewayv2_stage", "default")
    settings = one(stage, "default_route_settings")
    assert settings["throttling_burst_limit"] == "${var.throttling_burst_limit}"
    assert settings["throttling_rate_limit"] == "${var.throttling_rate_limit}"
    assert API.variables["throttling_burst_limit"]["default"] == 5000
    assert API.variables["throttling_rate_limit"]["default"] == 10000
    logs = one(stage, "access_log_settings")
    assert logs["destination_arn"] == "${aws_cloudwatch_log_group.access.arn}"
    assert logs["format"].startswith("${jsonencode(")
    api = API.resource("aws_apigatewayv2_api", "this")
    assert block(api, "dynamic")[0]["cors_configuration"]["content"][0]["allow_origins"] == "${var.cors_allowed_origins}"


def server_cors_lists():
    """`keyhole serve`'s CORS allow and expose lists, as header names, from server.rs."""
    source = (REPO / "crates" / "keyhole" / "src" / "server.rs").read_text()
    names = {}
    for kind in ("allow_headers", "expose_headers"):
        body = re.search(rf"\.{kind}\(\[(.*?)\]\)", source, flags=re.DOTALL).group(1)
        items = [item.strip() for item in body.split(",") if item.strip()]
        names[kind] = {
            "x-request-id" if "REQUEST_ID" in item else item.split("::")[-1].lower().replace("_", "-")
            for item in items
        }
    return names["allow_headers"], names["expose_headers"]


def test_api_cors_mirrors_keyhole_serve_for_a_json_api():
    api = API.resource("aws_apigatewayv2_api", "this")
    cors = block(api, "dynamic")[0]["cors_configuration"]["content"][0]
    allow, expose = set(cors["allow_headers"]), set(cors["expose_headers"])
    serve_allow, serve_expose = server_cors_lists()
    assert {"authorization", "content-type", "range", "if-none-match", "x-request-id"} <= serve_allow
    assert {"retry-after", "x-request-id", "etag"} <= serve_expose
    # Nothing keyhole serve would refuse, and everything a JSON client of the API uses.
    assert allow <= serve_allow and expose <= serve_expose, (allow - serve_allow, expose - serve_expose)
    assert allow == {"authorization", "content-type", "x-request-id"}
    assert {"retry-after", "x-request-id"} <= expose
    assert set(cors["allow_methods"]) == {"GET", "POST", "DELETE", "OPTIONS"}


def test_log_groups_are_encrypted_and_retained():
    for group in API.resources["aws_cloudwatch_log_group"].values():
        assert group["kms_key_id"] == "${var.kms_key_arn}"
        assert group["retention_in_days"] == "${var.log_retention_days}"
    assert one(FUNCTION, "logging_config")["log_group"] == "${aws_cloudwatch_log_group.function.name}"
    # CloudWatch Logs checks the key policy when a log group is created with the key.
    assert CALL["kms_key_arn"] == "${module.kms.key_arn_after_policy}"
    assert module("kms-key").outputs["key_arn_after_policy"]["depends_on"] == ["${aws_kms_key_policy.this}"]


def test_optional_jwt_authorizer_guards_the_private_routes():
    authorizer = API.resource("aws_apigatewayv2_authorizer", "jwt")
    assert authorizer["authorizer_type"] == "JWT"
    assert authorizer["count"] == "${local.jwt ? 1 : 0}"
    assert API.variables["jwt_issuer"]["default"] is None
    route = API.resource("aws_apigatewayv2_route", "this")
    assert route["authorization_type"] == '${local.jwt && !each.value.public ? "JWT" : "NONE"}'
    public = {key for key, value in API.locals["routes"].items() if value["public"]}
    assert public == {"GET /api/config", "GET /api/openapi.json"}


def test_invocations_go_through_the_live_alias():
    integration = API.resource("aws_apigatewayv2_integration", "lambda")
    assert integration["integration_uri"] == "${aws_lambda_alias.live.invoke_arn}"
    assert FUNCTION["publish"] is True
    permission = API.resource("aws_lambda_permission", "api")
    assert permission["qualifier"] == "${aws_lambda_alias.live.name}"
    assert permission["source_arn"].startswith("${aws_apigatewayv2_api.this.execution_arn}")


def test_a_failed_sweep_waits_for_the_next_schedule():
    config = API.resource("aws_lambda_function_event_invoke_config", "live")
    assert config["qualifier"] == "${aws_lambda_alias.live.name}"
    assert config["maximum_retry_attempts"] == 0
    assert one(FUNCTION, "dead_letter_config")["target_arn"] == "${var.dead_letter_queue_arn}"


def test_lambda_role_is_least_privilege():
    iam = module("integration-role")
    doc = iam.data["aws_iam_policy_document"]["lambda"]
    for statement in statements(doc):
        assert statement.get("effect", "Allow") == "Allow"
        assert "*" not in statement["resources"], statement["sid"]
        assert not any(a.endswith(":*") or a == "*" for a in statement["actions"]), statement["sid"]
        service = statement["actions"][0].split(":")[0]
        if service in ("secretsmanager", "dynamodb", "s3"):
            assert ("Bool", "aws:SecureTransport", ["true"]) in conditions(statement), statement["sid"]
        if service == "kms":
            assert any(v == "kms:ViaService" for _, v, _ in conditions(statement))
    by_sid = {s["sid"]: s for s in statements(doc)}
    assert by_sid["ReadSigningKey"]["resources"] == ["${var.secret_arn}"]
    assert by_sid["FileRecords"]["resources"] == ["${var.table_arn}", "${var.table_arn}/index/*"]
    assert by_sid["ObjectsUnderPrefix"]["resources"] == ["${var.bucket_arn}/${var.object_prefix}*"]
    assert ("StringLike", "s3:prefix", ["${var.object_prefix}", "${var.object_prefix}*"]) in conditions(by_sid["ListPrefix"])
    # Exactly the calls the code makes (crates/keyhole/src/store/{s3,s3_api,dynamodb}.rs,
    # keys/secrets.rs), nothing "for later".
    assert set(by_sid["ReadSigningKey"]["actions"]) == {"secretsmanager:GetSecretValue"}
    assert set(by_sid["FileRecords"]["actions"]) == {
        "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
        "dynamodb:DeleteItem", "dynamodb:BatchWriteItem", "dynamodb:Query",
    }
    assert set(by_sid["ObjectsUnderPrefix"]["actions"]) == {
        "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion",
        "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
    }
    every = {a for st in statements(doc) for a in st["actions"]}
    for unused in ("s3:ListBucketMultipartUploads", "dynamodb:ConditionCheckItem", "dynamodb:DescribeTable",
                   "dynamodb:DescribeTimeToLive", "secretsmanager:DescribeSecret"):
        assert unused not in every, unused


def test_the_lambda_never_creates_the_table_it_may_not_describe():
    # DescribeTable/DescribeTimeToLive are not granted: only KEYHOLE_DYNAMODB_CREATE_TABLE makes the
    # store call them, and the stack never sets it.
    for text in (API.text, STACK.text):
        assert "KEYHOLE_DYNAMODB_CREATE_TABLE" not in text


def test_signer_policy_reads_only_the_signing_key():
    iam = module("integration-role")
    doc = iam.data["aws_iam_policy_document"]["signer"]
    actions = {a for s in statements(doc) for a in s["actions"]}
    assert actions == {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret", "kms:Decrypt"}
    for statement in statements(doc):
        assert statement["resources"] in (["${var.secret_arn}"], ["${var.kms_key_arn}"])


def test_metadata_table_matches_the_file_record_schema():
    table = module("metadata-table").resource("aws_dynamodb_table", "this")
    assert table["billing_mode"] == "PAY_PER_REQUEST"
    assert table["hash_key"] == "file_id"
    attributes = {a["name"]: a["type"] for a in block(table, "attribute")}
    assert attributes == {
        "file_id": "S", "owner": "S", "upload_url_generated_at": "N", "expiry_shard": "N", "ttl": "N",
    }
    indexes = {i["name"]: (i["hash_key"], i["range_key"], i["projection_type"])
               for i in block(table, "global_secondary_index")}
    # Their names and key attributes are what crates/keyhole/src/store/dynamodb.rs queries.
    assert indexes == {
        "owner-index": ("owner", "upload_url_generated_at", "ALL"),
        "expiry-index": ("expiry_shard", "ttl", "ALL"),
    }
    assert one(table, "ttl") == {"attribute_name": "ttl", "enabled": True}
    sse = one(table, "server_side_encryption")
    assert sse["enabled"] is True and sse["kms_key_arn"] == "${var.kms_key_arn}"
    assert one(table, "point_in_time_recovery")["enabled"] == "${var.point_in_time_recovery}"
    assert STACK.modules["metadata_table"]["point_in_time_recovery"] == "${var.point_in_time_recovery}"


def test_signing_key_is_terraform_generated_and_kept_in_a_kms_encrypted_secret():
    keys = module("signing-keys")
    private = keys.resource("tls_private_key", "this")
    assert private["rsa_bits"] == '${var.algorithm == "RSA" ? 2048 : null}'
    assert private["ecdsa_curve"] == '${var.algorithm == "ECDSA" ? "P256" : null}'
    assert keys.variables["algorithm"]["default"] == "RSA"
    secret = module("private-key-secret")
    assert secret.resource("aws_secretsmanager_secret", "this")["kms_key_id"] == "${var.kms_key_arn}"
    stored = secret.resource("aws_secretsmanager_secret_version", "this")["secret_string"]
    assert stored.replace(" ", "") == "${jsonencode({private_key=var.private_key_pem,key_pair_id=var.key_pair_id})}", stored
    assert STACK.modules["private_key_secret"]["private_key_pem"] == "${module.signing_keys.active_private_key_pem}"
    group = keys.resource("aws_cloudfront_key_group", "this")
    assert "aws_cloudfront_public_key.generated" in group["items"]
    assert "aws_cloudfront_public_key.additional" in group["items"], "room for a second key"
