//! A behavioural suite every [`ObjectStorage`] must pass (local disk, S3). Run by
//! `tests/object_conformance.rs` against each backend that is available.

use bytes::Bytes;
use futures_util::StreamExt;

use super::objects::{ObjectError, ObjectStorage, StoredPart};

async fn read_all(store: &dyn ObjectStorage, key: &str, offset: u64, len: u64) -> Vec<u8> {
    let mut s = store.read(key, offset, len, None).await.expect("read");
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.expect("chunk"));
    }
    out
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Runs every check against `store`, using keys under `uploads/{run}-*` so it can share a
/// bucket with other runs.
pub async fn run(store: &dyn ObjectStorage, run: &str) {
    // Whole objects: invisible until commit, then readable in full and by range.
    let key = format!("uploads/{run}-whole");
    let body = bytes(9 * 1024 * 1024 + 17, 1);
    let mut w = store.begin_write(&key).await.expect("begin");
    for chunk in body.chunks(1 << 20) {
        w.write(Bytes::copy_from_slice(chunk)).await.expect("write");
    }
    assert!(
        matches!(store.head(&key).await, Err(ObjectError::NotFound)),
        "visible before commit"
    );
    w.commit().await.expect("commit");
    assert_eq!(
        store.head(&key).await.expect("head").size,
        body.len() as u64
    );
    assert_eq!(
        read_all(store, &key, 0, body.len() as u64).await,
        body,
        "full read"
    );
    assert_eq!(
        read_all(store, &key, 100, 50).await,
        &body[100..150],
        "range read"
    );

    // Write-once: a second writer of the same key is refused, at begin or at commit.
    match store.begin_write(&key).await {
        Err(ObjectError::Exists) => {}
        Ok(w) => assert!(
            matches!(w.commit().await, Err(ObjectError::Exists)),
            "overwrite allowed"
        ),
        Err(e) => panic!("unexpected {e}"),
    }
    assert_eq!(
        read_all(store, &key, 0, 10).await,
        &body[..10],
        "first content kept"
    );

    // Racing writers: two uploads of one new key, both begun before either commits. The first
    // commit stores its bytes, the second is refused, whole object or multipart. (The commits
    // run one after the other: that two at the same instant cannot both succeed is the
    // backend's own guarantee, a hard link locally and a conditional write on S3; moto, CI's
    // S3 stand-in, checks the condition and writes in two steps.)
    for (name, len) in [("race-small", 1000), ("race-large", 9 * 1024 * 1024 + 5)] {
        let key = format!("uploads/{run}-{name}");
        let (one, two) = (bytes(len, 3), bytes(len, 4));
        let mut a = store.begin_write(&key).await.expect("begin a");
        let mut b = store.begin_write(&key).await.expect("begin b");
        for chunk in one.chunks(1 << 20) {
            a.write(Bytes::copy_from_slice(chunk))
                .await
                .expect("write a");
        }
        for chunk in two.chunks(1 << 20) {
            b.write(Bytes::copy_from_slice(chunk))
                .await
                .expect("write b");
        }
        a.commit().await.expect("commit a");
        let second = b.commit().await;
        assert!(
            matches!(second, Err(ObjectError::Exists)),
            "{name}: the second commit answered {second:?}"
        );
        assert_eq!(
            read_all(store, &key, 0, len as u64).await,
            one,
            "{name}: stored bytes"
        );
        store.delete(&key).await.expect("cleanup race");
    }

    // A read pinned to what `head` saw: served while the object is that version, refused with
    // `Changed` once the key holds other bytes (a backend that keeps no ETag has nothing to pin,
    // and local objects are never rewritten in place).
    let key = format!("uploads/{run}-pinned");
    let (first, second) = (bytes(4096, 5), bytes(4096, 6));
    let put = |content: Vec<u8>| {
        let key = key.clone();
        async move {
            let mut w = store.begin_write(&key).await.expect("begin pinned");
            w.write(Bytes::from(content)).await.expect("write pinned");
            w.commit().await.expect("commit pinned");
        }
    };
    put(first.clone()).await;
    let etag = store.head(&key).await.expect("head pinned").etag;
    let pinned = store.read(&key, 0, 4096, etag.as_deref()).await;
    let mut got = Vec::new();
    let mut pinned = pinned.expect("pinned read of the current version");
    while let Some(c) = pinned.next().await {
        got.extend_from_slice(&c.expect("pinned chunk"));
    }
    assert_eq!(got, first, "pinned read");
    store.delete(&key).await.expect("delete pinned");
    put(second.clone()).await;
    assert_eq!(read_all(store, &key, 0, 4096).await, second, "replacement");
    if let Some(old) = etag {
        let stale = store.read(&key, 0, 4096, Some(&old)).await;
        assert!(
            matches!(stale, Err(ObjectError::Changed)),
            "a read pinned to a replaced version was not refused"
        );
    }
    store.delete(&key).await.expect("cleanup pinned");

    let key = format!("uploads/{run}-race-parts");
    let part_bytes = bytes(5 * 1024 * 1024, 9);
    let mut completions = Vec::new();
    for _ in 0..2 {
        let upload = store.create_multipart(&key).await.expect("create race");
        let mut w = store
            .begin_part(&key, &upload, 1, part_bytes.len() as u64)
            .await
            .expect("race part");
        w.write(Bytes::copy_from_slice(&part_bytes))
            .await
            .expect("write race part");
        let etag = w.commit().await.expect("commit race part");
        let part = StoredPart {
            number: 1,
            size: part_bytes.len() as u64,
            etag: etag.unwrap_or_else(|| {
                format!("\"{}\"", hex::encode(openssl::sha::sha256(&part_bytes)))
            }),
        };
        completions.push((upload, part));
    }
    let [(first, first_part), (second, second_part)] =
        <[_; 2]>::try_from(completions).expect("two uploads");
    store
        .complete_multipart(&key, &first, &[first_part], None)
        .await
        .expect("first completion");
    let again = store
        .complete_multipart(&key, &second, &[second_part], None)
        .await;
    assert!(
        matches!(again, Err(ObjectError::Exists)),
        "the second completion answered {again:?}"
    );
    store
        .abort_multipart(&key, &second)
        .await
        .expect("abort the second upload");
    store.delete(&key).await.expect("cleanup race parts");

    // A small object, and a dropped writer leaves nothing.
    let small = format!("uploads/{run}-small");
    let mut w = store.begin_write(&small).await.expect("begin small");
    w.write(Bytes::from_static(b"tiny"))
        .await
        .expect("write small");
    w.commit().await.expect("commit small");
    assert_eq!(read_all(store, &small, 0, 4).await, b"tiny");
    let dropped = format!("uploads/{run}-dropped");
    let mut w = store.begin_write(&dropped).await.expect("begin dropped");
    w.write(Bytes::from_static(b"never"))
        .await
        .expect("write dropped");
    drop(w);
    assert!(
        matches!(store.head(&dropped).await, Err(ObjectError::NotFound)),
        "dropped writer left an object"
    );

    // Delete.
    assert!(store.delete(&small).await.expect("delete"));
    assert!(!store.delete(&small).await.expect("delete again"));
    assert!(matches!(
        store.head(&small).await,
        Err(ObjectError::NotFound)
    ));

    // Multipart: parts out of order, one replaced, completed into the exact bytes.
    let multi = format!("uploads/{run}-multi");
    let part = 5 * 1024 * 1024;
    let whole = bytes(2 * part + 1000, 7);
    let upload = store
        .create_multipart(&multi)
        .await
        .expect("create multipart");
    let mut parts = Vec::new();
    for (n, data) in [
        (3u32, &whole[2 * part..]),
        (1, &whole[..part]),
        (2, &whole[part..2 * part]),
    ] {
        let mut w = store
            .begin_part(&multi, &upload, n, data.len() as u64)
            .await
            .expect("begin part");
        // Part 2 is first written with wrong bytes, then again.
        if n == 2 {
            w.write(Bytes::from(vec![0u8; data.len()]))
                .await
                .expect("wrong part");
            w.commit().await.expect("commit wrong part");
            w = store
                .begin_part(&multi, &upload, n, data.len() as u64)
                .await
                .expect("again");
        }
        w.write(Bytes::copy_from_slice(data))
            .await
            .expect("write part");
        let etag = w.commit().await.expect("commit part");
        parts.push(StoredPart {
            number: n,
            size: data.len() as u64,
            etag: etag
                .unwrap_or_else(|| format!("\"{}\"", hex::encode(openssl::sha::sha256(data)))),
        });
    }
    parts.sort_by_key(|p| p.number);
    let expected = hex::encode(openssl::sha::sha256(&whole));
    let done = store
        .complete_multipart(&multi, &upload, &parts, Some(&expected))
        .await
        .expect("complete");
    assert_eq!(done.size, whole.len() as u64);
    if let Some(sha) = done.sha256 {
        assert_eq!(sha, expected);
    }
    assert_eq!(
        read_all(store, &multi, 0, whole.len() as u64).await,
        whole,
        "assembled bytes"
    );

    // Abort frees an upload; aborting twice is fine.
    let aborted = format!("uploads/{run}-aborted");
    let upload = store.create_multipart(&aborted).await.expect("create");
    let mut w = store
        .begin_part(&aborted, &upload, 1, 3)
        .await
        .expect("part");
    w.write(Bytes::from_static(b"abc")).await.expect("write");
    w.commit().await.expect("commit");
    store
        .abort_multipart(&aborted, &upload)
        .await
        .expect("abort");
    store
        .abort_multipart(&aborted, &upload)
        .await
        .expect("abort twice");
    assert!(matches!(
        store.head(&aborted).await,
        Err(ObjectError::NotFound)
    ));

    // Keys that could escape are refused.
    for bad in ["../x", "uploads/../x", "uploads/.x", "/abs"] {
        assert!(
            matches!(store.begin_write(bad).await, Err(ObjectError::InvalidKey)),
            "{bad}"
        );
    }
    store.ping().await.expect("ping");
    for k in [&key, &multi] {
        store.delete(k).await.expect("cleanup");
    }
}
