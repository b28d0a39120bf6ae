//! The scheduled sweep against moto: expired records and their objects go together (multipart
//! uploads aborted), fresh files stay, and a second run finds nothing to do. Also checks the
//! schedule's input in Terraform is the event the Lambda recognises.

mod common;

use common::*;
use keyhole_lambda::sweep::SWEEP_EVENT;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_files_go_with_their_objects_and_fresh_ones_stay() {
    let Some(moto) = moto("scheduled sweep") else {
        return;
    };
    let mut aws = Aws::create(moto).await;
    let lambda = aws.lambda().await;
    let meta = &lambda.state().meta;

    let mut uploaded = Vec::new();
    for name in ["old-1.txt", "old-2.txt", "fresh.txt"] {
        let id = create_upload(&lambda, name, Some(5)).await["fileId"]
            .as_str()
            .unwrap()
            .to_owned();
        let etag = put_object(&lambda, &id, b"bytes").await;
        assert!(deliver_created(&lambda, &aws, &id, 5, &etag)
            .await
            .is_empty());
        uploaded.push(id);
    }
    let abandoned = create_upload(&lambda, "abandoned.bin", Some(1)).await["fileId"]
        .as_str()
        .unwrap()
        .to_owned();
    let multipart = create_upload(&lambda, "abandoned.tar", Some(12 * 1024 * 1024)).await;
    assert!(multipart["uploadId"].is_string(), "{multipart}");
    let multipart = multipart["fileId"].as_str().unwrap().to_owned();
    let pending = create_upload(&lambda, "in-progress.bin", Some(1)).await["fileId"]
        .as_str()
        .unwrap()
        .to_owned();

    // Past their TTL: two uploaded files, an abandoned single upload, an abandoned multipart.
    let expired = [&uploaded[0], &uploaded[1], &abandoned, &multipart];
    for id in expired {
        assert!(meta.expire(id, now() - 1).await.unwrap(), "{id}");
    }

    let event: Value = fixture("events/sweep.json", &[]);
    // An invocation within seconds of its deadline leaves the work to the next sweep, and says
    // so, rather than time out halfway.
    let hurried = std::time::SystemTime::now() + std::time::Duration::from_secs(2);
    let summary = lambda
        .handle_until(event.clone(), Some(hurried))
        .await
        .expect("a hurried sweep succeeds");
    assert_eq!(summary["removed"], json!(0), "{summary}");
    assert_eq!(summary["outOfTime"], json!(true), "{summary}");
    assert!(meta.get(expired[0]).await.unwrap().is_some());

    let summary = lambda.handle(event.clone()).await.expect("sweep succeeds");
    assert_eq!(summary["removed"], json!(4), "{summary}");
    assert_eq!(summary["outOfTime"], json!(false), "{summary}");
    assert_eq!(
        summary["limit"],
        json!(keyhole::sweeper::PASS_LIMIT),
        "{summary}"
    );
    assert_eq!(summary["errors"], json!(0), "{summary}");
    for id in expired {
        assert!(meta.get(id).await.unwrap().is_none(), "record of {id} gone");
        assert!(!object_exists(&lambda, id).await, "object of {id} gone");
    }
    let fresh = &uploaded[2];
    let record = meta.get(fresh).await.unwrap().expect("fresh record kept");
    assert_eq!(record.status, keyhole::store::Status::Uploaded);
    assert!(object_exists(&lambda, fresh).await, "fresh object kept");
    assert!(
        meta.get(&pending).await.unwrap().is_some(),
        "live pending upload kept"
    );

    // Idempotent: nothing left to do, nothing else touched.
    let summary = lambda.handle(event).await.expect("second sweep succeeds");
    assert_eq!(summary["removed"], json!(0), "{summary}");
    assert!(object_exists(&lambda, fresh).await);
    let (status, _) = invoke_http(&lambda, api_event("download", fresh)).await;
    assert_eq!(status, 200);
}

#[test]
fn the_schedule_sends_the_event_the_lambda_recognises() {
    let fixture: Value = fixture("events/sweep.json", &[]);
    assert_eq!(fixture, serde_json::from_str::<Value>(SWEEP_EVENT).unwrap());
    let classified = keyhole_lambda::event::classify(fixture).unwrap();
    assert!(matches!(classified, keyhole_lambda::event::Event::Sweep));

    // deploy/terraform/modules/upload-events: variable "sweep_input" { default = "..." }
    let tf = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/terraform/modules/upload-events/variables.tf"
    ))
    .unwrap();
    let block = &tf[tf
        .find("variable \"sweep_input\"")
        .expect("sweep_input variable")..];
    let line = block
        .lines()
        .find_map(|l| l.trim().strip_prefix("default"))
        .expect("sweep_input default");
    let quoted = line.trim().trim_start_matches('=').trim();
    let input: String = serde_json::from_str(quoted).expect("an HCL string is a JSON string here");
    assert_eq!(
        serde_json::from_str::<Value>(&input).unwrap(),
        serde_json::from_str::<Value>(SWEEP_EVENT).unwrap()
    );
}
