//! S3 `ObjectCreated` notifications, as S3 writes them, wrapped in SQS messages as the event
//! source mapping delivers them, against moto: a pending record becomes uploaded (and its
//! download link is minted), a duplicate is a no-op, an object without a record or of the wrong
//! size is deleted, a bad message is reported alone, and S3's test event is acknowledged.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_record_becomes_uploaded_once() {
    let Some(moto) = moto("S3 upload events: pending to uploaded") else {
        return;
    };
    let mut aws = Aws::create(moto).await;
    let lambda = aws.lambda().await;
    let body = b"quarterly numbers";
    let link = create_upload(&lambda, "Q3 report.pdf", Some(body.len() as u64)).await;
    let id = link["fileId"].as_str().unwrap().to_owned();

    // Not uploaded yet: no download link.
    let (status, reply) = invoke_http(&lambda, api_event("download", &id)).await;
    assert_eq!(status, 409, "{reply}");

    let etag = put_object(&lambda, &id, body).await;
    assert_eq!(
        deliver_created(&lambda, &aws, &id, body.len() as u64, &etag).await,
        Vec::<String>::new()
    );
    let record = lambda.state().meta.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, keyhole::store::Status::Uploaded);
    assert_eq!(record.size, Some(body.len() as u64));
    assert_eq!(record.etag.as_deref(), Some(format!("\"{etag}\"").as_str()));
    let ttl = record.ttl.expect("retention TTL");
    let retention = lambda.state().config.retention.as_secs() as i64;
    assert!(
        (ttl - (now() + retention)).abs() <= 60,
        "TTL is the retention from now, as the edge sets it: {ttl}"
    );
    assert_eq!(upload_count(&lambda, "committed"), 1);

    // Now the download link is minted, for the CloudFront domain, with the secret's key.
    let (status, reply) = invoke_http(&lambda, api_event("download", &id)).await;
    assert_eq!(status, 200, "{reply}");
    let url = reply["downloadUrl"].as_str().unwrap();
    assert!(url.starts_with(&format!("{PUBLIC}/files/{id}?")), "{url}");
    assert!(cloudfront_accepts(&aws.key, url));
    // CloudFront serves it from S3, which answers with the record's headers only if asked.
    assert!(
        carries_record_headers(url, "application/octet-stream", "Q3 report.pdf"),
        "{url}"
    );

    // The same event again (SQS delivers at least once): nothing changes, nothing is deleted.
    assert!(
        deliver_created(&lambda, &aws, &id, body.len() as u64, &etag)
            .await
            .is_empty()
    );
    let again = lambda.state().meta.get(&id).await.unwrap().unwrap();
    assert_eq!(again, record, "a duplicate event changes nothing");
    assert!(object_exists(&lambda, &id).await);
    assert_eq!(upload_count(&lambda, "committed"), 1);
    assert_eq!(upload_count(&lambda, "event_duplicate"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_without_a_record_or_of_the_wrong_size_are_deleted() {
    let Some(moto) = moto("S3 upload events: deletions") else {
        return;
    };
    let mut aws = Aws::create(moto).await;
    let lambda = aws.lambda().await;

    // An object nobody asked for: a well-formed id with no record.
    let ghost = keyhole::ids::new_file_id("ghost.bin").unwrap();
    let etag = put_object(&lambda, &ghost, b"uninvited").await;
    assert!(deliver_created(&lambda, &aws, &ghost, 9, &etag)
        .await
        .is_empty());
    assert!(
        !object_exists(&lambda, &ghost).await,
        "unknown object deleted"
    );
    assert_eq!(upload_count(&lambda, "event_deleted_unrecorded"), 1);

    // Declared 11 bytes, 20 arrived: the object goes, the record stays pending (the link may
    // still be used for a correct upload).
    let link = create_upload(&lambda, "small.bin", Some(11)).await;
    let id = link["fileId"].as_str().unwrap().to_owned();
    let etag = put_object(&lambda, &id, &[7u8; 20]).await;
    assert!(deliver_created(&lambda, &aws, &id, 20, &etag)
        .await
        .is_empty());
    assert!(
        !object_exists(&lambda, &id).await,
        "oversize object deleted"
    );
    let record = lambda.state().meta.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, keyhole::store::Status::Pending);
    assert_eq!(upload_count(&lambda, "event_deleted_size"), 1);

    // A late event about a wrong first attempt must not delete the correct retry that replaced
    // it: declared 11 bytes, 20 sent, then 11 sent again with the same link, and the first
    // attempt's event arrives after the second PUT.
    let link = create_upload(&lambda, "retried.bin", Some(11)).await;
    let id = link["fileId"].as_str().unwrap().to_owned();
    let first = put_object(&lambda, &id, &[3u8; 20]).await;
    // (CloudFront's PUT to S3 overwrites; the store under test is write-once, so delete first.)
    let key = format!("uploads/{id}");
    lambda.state().objects.delete(&key).await.unwrap();
    let second = put_object(&lambda, &id, &[4u8; 11]).await;
    assert!(deliver_created(&lambda, &aws, &id, 20, &first)
        .await
        .is_empty());
    assert!(object_exists(&lambda, &id).await, "the retry was deleted");
    assert!(deliver_created(&lambda, &aws, &id, 11, &second)
        .await
        .is_empty());
    let record = lambda.state().meta.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, keyhole::store::Status::Uploaded);
    assert_eq!(record.size, Some(11));

    // Over the size limit with no declared size.
    let lambda = aws.lambda_with(|c| c.max_upload_bytes = 16).await;
    let link = create_upload(&lambda, "undeclared.bin", None).await;
    let id = link["fileId"].as_str().unwrap().to_owned();
    let etag = put_object(&lambda, &id, &[1u8; 17]).await;
    assert!(deliver_created(&lambda, &aws, &id, 17, &etag)
        .await
        .is_empty());
    assert!(
        !object_exists(&lambda, &id).await,
        "object over the limit deleted"
    );

    // An uploaded record is never deleted by an event, even a late one with another size.
    let link = create_upload(&lambda, "kept.bin", None).await;
    let id = link["fileId"].as_str().unwrap().to_owned();
    let etag = put_object(&lambda, &id, b"kept").await;
    assert!(deliver_created(&lambda, &aws, &id, 4, &etag)
        .await
        .is_empty());
    assert!(deliver_created(&lambda, &aws, &id, 5, "0000")
        .await
        .is_empty());
    assert!(object_exists(&lambda, &id).await);
    let record = lambda.state().meta.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, keyhole::store::Status::Uploaded);
    assert_eq!(record.size, Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_reports_only_the_messages_that_failed() {
    let Some(moto) = moto("S3 upload events: partial batch failures") else {
        return;
    };
    let mut aws = Aws::create(moto).await;
    let lambda = aws.lambda().await;
    let a = create_upload(&lambda, "a.txt", Some(1)).await["fileId"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = create_upload(&lambda, "b.txt", Some(2)).await["fileId"]
        .as_str()
        .unwrap()
        .to_owned();
    let etag_a = put_object(&lambda, &a, b"a").await;
    let etag_b = put_object(&lambda, &b, b"bb").await;
    let test_event =
        fixture("events/s3-test-event.json", &[("__BUCKET__", &aws.bucket)]).to_string();
    let outside = s3_created(&aws.bucket, "elsewhere/uploads/x", 3, "abc");
    let other_bucket = s3_created("someone-elses-bucket", &aws.s3_key(&a), 1, &etag_a);
    // Written with direct access to the bucket, under a name keyhole cannot address: nothing to
    // retry.
    let foreign = s3_created(&aws.bucket, &aws.s3_key("my file (1).pdf"), 4, "abc");
    let batch = sqs_batch(&[
        ("m-1", &s3_created(&aws.bucket, &aws.s3_key(&a), 1, &etag_a)),
        ("m-2", "{\"Records\": [ this is not JSON"),
        ("m-3", &test_event),
        (
            "m-4",
            "{\"Records\": [{\"eventName\": \"ObjectCreated:Put\"}]}",
        ),
        ("m-5", &outside),
        ("m-6", &other_bucket),
        ("m-7", &s3_created(&aws.bucket, &aws.s3_key(&b), 2, &etag_b)),
        ("m-8", &foreign),
    ]);
    // An invocation out of time leaves every message for redelivery, untouched.
    let late = lambda
        .handle_until(batch.clone(), Some(std::time::SystemTime::now()))
        .await
        .expect("batch handled");
    assert_eq!(
        failures(&late),
        vec!["m-1", "m-2", "m-3", "m-4", "m-5", "m-6", "m-7", "m-8"],
        "{late}"
    );
    assert_eq!(
        lambda.state().meta.get(&a).await.unwrap().unwrap().status,
        keyhole::store::Status::Pending
    );
    let answer = lambda.handle(batch).await.expect("batch handled");
    assert_eq!(failures(&answer), vec!["m-2", "m-4"], "{answer}");
    for id in [&a, &b] {
        let r = lambda.state().meta.get(id).await.unwrap().unwrap();
        assert_eq!(r.status, keyhole::store::Status::Uploaded, "{id}");
    }
    assert_eq!(upload_count(&lambda, "event_test"), 1);
    assert_eq!(upload_count(&lambda, "event_ignored"), 3);

    // The test event alone is acknowledged, not failed.
    let answer = lambda
        .handle(sqs_batch(&[("t-1", &test_event)]))
        .await
        .unwrap();
    assert_eq!(answer, json!({"batchItemFailures": []}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_decoded_and_multipart_completion_is_left_to_the_api() {
    let Some(moto) = moto("S3 upload events: encoded keys and multipart") else {
        return;
    };
    let mut aws = Aws::create(moto).await;
    let lambda = aws.lambda().await;

    // S3 encodes keys in events; a file id's characters survive the round trip.
    let id = create_upload(&lambda, "v1.2 final~draft.txt", Some(3)).await["fileId"]
        .as_str()
        .unwrap()
        .to_owned();
    let etag = put_object(&lambda, &id, b"abc").await;
    let body = s3_created(&aws.bucket, &aws.s3_key(&id), 3, &etag);
    let answer = lambda.handle(sqs_batch(&[("k-1", &body)])).await.unwrap();
    assert!(failures(&answer).is_empty(), "{answer}");
    let r = lambda.state().meta.get(&id).await.unwrap().unwrap();
    assert_eq!(r.status, keyhole::store::Status::Uploaded);

    // A key that is not valid percent-encoded UTF-8 is a malformed message.
    let bad = s3_created(&aws.bucket, "x", 1, "e").replace("\"x\"", "\"keyhole/uploads/%FF\"");
    let answer = lambda.handle(sqs_batch(&[("k-2", &bad)])).await.unwrap();
    assert_eq!(failures(&answer), vec!["k-2"]);

    // A pending multipart upload's object appears when the API completes it, and the API marks
    // the record itself; the event is retried (so it is seen once the record is uploaded) and
    // the object is never deleted.
    let mp = create_upload(&lambda, "big.tar", Some(12 * 1024 * 1024)).await;
    let mp_id = mp["fileId"].as_str().unwrap().to_owned();
    assert!(mp["uploadId"].is_string(), "{mp}");
    let etag = put_object(&lambda, &mp_id, b"assembled").await;
    let body = s3_created(&aws.bucket, &aws.s3_key(&mp_id), 12 * 1024 * 1024, &etag);
    let answer = lambda.handle(sqs_batch(&[("k-3", &body)])).await.unwrap();
    assert_eq!(failures(&answer), vec!["k-3"]);
    assert!(object_exists(&lambda, &mp_id).await);
    let r = lambda.state().meta.get(&mp_id).await.unwrap().unwrap();
    assert_eq!(r.status, keyhole::store::Status::Pending);

    // A completion that lost its answer and was never called again: once the event has waited
    // out its patience, the event records the object itself, after the usual size checks.
    let size = 7 * 1024 * 1024;
    let mp = create_upload(&lambda, "orphan.tar", Some(size)).await;
    let mp_id = mp["fileId"].as_str().unwrap().to_owned();
    assert!(mp["uploadId"].is_string(), "{mp}");
    let etag = put_object(&lambda, &mp_id, &vec![7u8; size as usize]).await;
    let body = s3_created(&aws.bucket, &aws.s3_key(&mp_id), size, &etag);
    let delivery = |n: u32| {
        let mut batch = sqs_batch(&[("k-4", &body)]);
        batch["Records"][0]["attributes"]["ApproximateReceiveCount"] = json!(n.to_string());
        batch
    };
    let patience = keyhole_lambda::upload_events::COMPLETION_PATIENCE;
    let answer = lambda.handle(delivery(patience)).await.unwrap();
    assert_eq!(failures(&answer), vec!["k-4"], "still the API's to record");
    let answer = lambda.handle(delivery(patience + 1)).await.unwrap();
    assert!(failures(&answer).is_empty(), "{answer}");
    let r = lambda.state().meta.get(&mp_id).await.unwrap().unwrap();
    assert_eq!(r.status, keyhole::store::Status::Uploaded);
    assert_eq!(r.size, Some(size));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_put_over_an_uploaded_file_is_undone() {
    let Some(moto) = moto("S3 upload events: an overwrite of an uploaded file") else {
        return;
    };
    let mut aws = Aws::create(moto).await;
    let s3 = aws.moto.s3.trim_end_matches('/').to_owned();
    let http = reqwest::Client::new();
    // The bucket is versioned, as the s3-bucket module makes it.
    let r = http
        .put(format!("{s3}/{}?versioning", aws.bucket))
        .body(
            r#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>"#,
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "enable versioning: {}", r.status());
    let lambda = aws.lambda().await;
    let body = b"the signed contract";
    let link = create_upload(&lambda, "contract.pdf", Some(body.len() as u64)).await;
    let id = link["fileId"].as_str().unwrap().to_owned();
    let etag = put_object(&lambda, &id, body).await;
    assert!(
        deliver_created(&lambda, &aws, &id, body.len() as u64, &etag)
            .await
            .is_empty()
    );
    let record = lambda.state().meta.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, keyhole::store::Status::Uploaded);

    // The upload link is still valid, and CloudFront forwards a second PUT to S3: other bytes,
    // another size, a new version.
    // (Signed as S3 wants it: a presigned PUT, as an `s3-presigned` upload link is.)
    let put_url = lambda
        .state()
        .objects
        .presign(
            &format!("uploads/{id}"),
            &keyhole::store::objects::PresignOp::Put {
                content_length: None,
            },
            std::time::SystemTime::now(),
            std::time::Duration::from_secs(300),
        )
        .await
        .unwrap()
        .expect("S3 presigns");
    let other = vec![b'x'; 4096];
    let r = http.put(&put_url).body(other.clone()).send().await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    assert!(
        status.is_success(),
        "overwrite: {status}: {}",
        r.text().await.unwrap()
    );
    let version = headers["x-amz-version-id"].to_str().unwrap().to_owned();
    let other_etag = headers["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .to_owned();
    assert_eq!(stored(&lambda, &id).await, sha256_hex(&other));
    let overwrite_event = || {
        deliver_created_version(
            &lambda,
            &aws,
            &id,
            other.len() as u64,
            &other_etag,
            &version,
        )
    };

    assert!(overwrite_event().await.is_empty());
    // That version is gone: the uploaded file is what S3 serves again, and the record is as it was.
    assert_eq!(stored(&lambda, &id).await, sha256_hex(body));
    assert_eq!(lambda.state().meta.get(&id).await.unwrap().unwrap(), record);
    assert_eq!(upload_count(&lambda, "event_overwrite_undone"), 1);

    // The same event delivered again (SQS is at least once): the version is already gone, the
    // uploaded file stays.
    assert!(overwrite_event().await.is_empty());
    assert_eq!(stored(&lambda, &id).await, sha256_hex(body));
}

/// The SHA-256 of the current object of `file_id`, as S3 serves it.
async fn stored(lambda: &keyhole_lambda::Lambda, file_id: &str) -> String {
    let key = format!("uploads/{file_id}");
    let objects = &lambda.state().objects;
    let size = objects.head(&key).await.unwrap().size;
    keyhole::store::objects::sha256_of(&**objects, &key, size)
        .await
        .unwrap()
        .0
}

/// The S3 event sees an object's size, never its bytes, so it records a single-part upload
/// without checking a declared SHA-256. `/complete` checks it then: other bytes of the declared
/// size are removed, object and record, and the client hears 400 (before, `409
/// already_uploaded`, which clients take as success); the declared bytes get `409` as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_checks_the_declared_sha256_of_an_upload_its_event_recorded() {
    let Some(moto) = moto("S3 upload events: declared SHA-256 checked by /complete") else {
        return;
    };
    let mut aws = Aws::create(moto).await;
    let lambda = aws.lambda().await;
    let declared = b"the declared bytes";
    let mut wrong = declared.to_vec();
    wrong[0] ^= 1;

    for (name, sent, accepted) in [
        ("right.txt", &declared[..], true),
        ("wrong.txt", &wrong[..], false),
    ] {
        let id = create_upload_of(&lambda, name, declared).await;

        let etag = put_object(&lambda, &id, sent).await;
        assert!(
            deliver_created(&lambda, &aws, &id, sent.len() as u64, &etag)
                .await
                .is_empty()
        );
        let record = lambda.state().meta.get(&id).await.unwrap().unwrap();
        assert_eq!(record.status, keyhole::store::Status::Uploaded, "{name}");
        assert_eq!(
            record.sha256, None,
            "{name}: the event never sees the bytes"
        );

        let (status, reply) = invoke_http(&lambda, api_event("complete", &id)).await;
        if accepted {
            assert_eq!(status, 409, "{name}: {reply}");
            assert_eq!(
                reply["error"]["code"], "already_uploaded",
                "{name}: {reply}"
            );
            assert!(object_exists(&lambda, &id).await, "{name}");
            let (status, reply) = invoke_http(&lambda, api_event("download", &id)).await;
            assert_eq!(status, 200, "{name}: {reply}");
        } else {
            assert_eq!(status, 400, "{name}: {reply}");
            assert!(
                reply["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("SHA-256"),
                "{name}: {reply}"
            );
            assert!(
                !object_exists(&lambda, &id).await,
                "{name}: the wrong bytes are gone"
            );
            assert!(
                lambda.state().meta.get(&id).await.unwrap().is_none(),
                "{name}: and so is the record"
            );
            let (status, reply) = invoke_http(&lambda, api_event("download", &id)).await;
            assert_eq!(status, 404, "{name}: {reply}");
        }
    }
}

/// An uploaded record whose object went meanwhile (removed with its file, or by hand) has
/// nothing left for `/complete` to check: it answers `409 already_uploaded` as before, not
/// `not_arrived`, which would tell the client to PUT again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_of_a_recorded_upload_whose_object_went_is_already_uploaded() {
    let Some(moto) = moto("S3 upload events: /complete after the object went") else {
        return;
    };
    let mut aws = Aws::create(moto).await;
    let lambda = aws.lambda().await;
    let bytes = b"the declared bytes";
    let id = create_upload_of(&lambda, "gone.txt", bytes).await;
    let etag = put_object(&lambda, &id, bytes).await;
    assert!(
        deliver_created(&lambda, &aws, &id, bytes.len() as u64, &etag)
            .await
            .is_empty()
    );
    lambda
        .state()
        .objects
        .delete(&format!("uploads/{id}"))
        .await
        .unwrap();
    let (status, reply) = invoke_http(&lambda, api_event("complete", &id)).await;
    assert_eq!(status, 409, "{reply}");
    assert_eq!(reply["error"]["code"], "already_uploaded", "{reply}");
}

/// `/complete` read a pending record, then found other bytes than the declared SHA-256 and
/// deleted them, while the S3 event recorded the same object as uploaded: the record, naming
/// bytes now gone, goes too, instead of staying an uploaded file without an object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_object_recorded_meanwhile_by_its_event_takes_the_record_with_it() {
    let Some(moto) = moto("S3 upload events: /complete refusing what the event recorded") else {
        return;
    };
    let mut aws = Aws::create(moto).await;
    let lambda = aws.lambda().await;
    let declared = b"the declared bytes";
    let mut wrong = declared.to_vec();
    wrong[0] ^= 1;
    let id = create_upload_of(&lambda, "raced.txt", declared).await;
    // What `/complete` read before the event came: the record still pending.
    let pending = lambda.state().meta.get(&id).await.unwrap().unwrap();
    assert_eq!(pending.status, keyhole::store::Status::Pending);

    let etag = put_object(&lambda, &id, &wrong).await;
    assert!(
        deliver_created(&lambda, &aws, &id, wrong.len() as u64, &etag)
            .await
            .is_empty()
    );
    let result = keyhole::direct::complete_single(lambda.state(), &pending).await;
    let error = result.expect_err("refused");
    assert!(
        matches!(error, keyhole::direct::DirectError::Removed { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("SHA-256") && error.to_string().contains("new upload link"),
        "the client is told its link is of no use any more: {error}"
    );
    assert!(
        !object_exists(&lambda, &id).await,
        "the wrong bytes are gone"
    );
    assert!(
        lambda.state().meta.get(&id).await.unwrap().is_none(),
        "and so is the record that named them"
    );
}

/// Creates an upload through the Lambda's API declaring the size and SHA-256 of `bytes`; returns
/// its file id.
async fn create_upload_of(lambda: &keyhole_lambda::Lambda, filename: &str, bytes: &[u8]) -> String {
    let mut event = api_event("upload", "");
    event["body"] = json!(json!({
        "filename": filename,
        "contentType": "application/octet-stream",
        "size": bytes.len(),
        "sha256": sha256_hex(bytes),
    })
    .to_string());
    let (status, link) = invoke_http(lambda, event).await;
    assert_eq!(status, 200, "{link}");
    link["fileId"].as_str().unwrap().to_owned()
}
