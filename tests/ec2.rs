//! The EC2 adapter against EC2 as moto_server speaks it (started per test), behind the
//! fault-injecting proxy where a test needs throttling, a refusal, or a snapshot that stays
//! `pending` (moto completes snapshots at once). Tests skip with a hint when moto_server is not
//! installed, and fail under `CI=true`.

use std::time::Duration;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification, VolumeType};
use lifeboat::store::StaticCredentials;
use lifeboat::volumes::ec2::{AwsEc2, Ec2, Ec2ErrorKind, NewVolume, Settings};
use lifeboat_testkit::{FaultProxy, Moto, Rule};

const KMS_KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn settings(endpoint: &str) -> Settings {
    Settings {
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint.into()),
        credentials: Some(StaticCredentials::new("testing", "testing")),
        // Real EC2 wants the SDK's 1 s; tests exercise the same retries, faster.
        retry_initial_backoff: Duration::from_millis(5),
        ..Settings::default()
    }
}

async fn adapter(endpoint: &str) -> AwsEc2 {
    AwsEc2::new(&settings(endpoint))
        .await
        .expect("build the EC2 client")
}

fn pair(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

fn sorted(mut tags: Vec<(String, String)>) -> Vec<(String, String)> {
    tags.sort();
    tags
}

/// A volume made directly in moto, as the cluster's CSI driver would have made it.
struct Source<'a> {
    zone: &'a str,
    volume_type: &'a str,
    size: i32,
    iops: Option<i32>,
    throughput: Option<i32>,
    kms_key_id: Option<&'a str>,
    tags: &'a [(&'a str, &'a str)],
}

impl Default for Source<'_> {
    fn default() -> Self {
        Source {
            zone: "us-east-1a",
            volume_type: "gp3",
            size: 20,
            iops: None,
            throughput: None,
            kms_key_id: None,
            tags: &[],
        }
    }
}

async fn make_volume(moto: &Moto, source: &Source<'_>) -> String {
    let tags = source
        .tags
        .iter()
        .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
        .collect::<Vec<_>>();
    let out = moto
        .ec2_client()
        .create_volume()
        .availability_zone(source.zone)
        .volume_type(VolumeType::from(source.volume_type))
        .size(source.size)
        .set_iops(source.iops)
        .set_throughput(source.throughput)
        .set_encrypted(source.kms_key_id.map(|_| true))
        .set_kms_key_id(source.kms_key_id.map(str::to_string))
        .set_tag_specifications((!tags.is_empty()).then(|| {
            vec![
                TagSpecification::builder()
                    .resource_type(ResourceType::Volume)
                    .set_tags(Some(tags))
                    .build(),
            ]
        }))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "creating a volume in moto failed: {}",
                aws_sdk_ec2::error::DisplayErrorContext(e)
            )
        });
    out.volume_id.expect("moto returns a volume id")
}

/// The snapshots moto holds for `volume_id`, whoever made them.
async fn snapshots_of(moto: &Moto, volume_id: &str) -> Vec<String> {
    let out = moto
        .ec2_client()
        .describe_snapshots()
        .filters(
            Filter::builder()
                .name("volume-id")
                .values(volume_id)
                .build(),
        )
        .send()
        .await
        .expect("DescribeSnapshots in moto");
    out.snapshots()
        .iter()
        .filter_map(|s| s.snapshot_id().map(str::to_string))
        .collect()
}

async fn volume_exists(moto: &Moto, volume_id: &str) -> bool {
    let out = moto
        .ec2_client()
        .describe_volumes()
        .filters(
            Filter::builder()
                .name("volume-id")
                .values(volume_id)
                .build(),
        )
        .send()
        .await
        .expect("DescribeVolumes in moto");
    !out.volumes().is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_volume_reports_gp3_performance_encryption_and_tags() {
    let Some(moto) = Moto::start() else { return };
    let volume_id = make_volume(
        &moto,
        &Source {
            zone: "us-east-1b",
            size: 50,
            iops: Some(3500),
            throughput: Some(200),
            kms_key_id: Some(KMS_KEY),
            tags: &[
                ("Name", "data-postgres-0"),
                ("kubernetes.io/created-for/pvc/name", "data-postgres-0"),
            ],
            ..Source::default()
        },
    )
    .await;
    let ec2 = adapter(&moto.endpoint()).await;

    let info = ec2.describe_volume(&volume_id).await.expect("describe");

    assert_eq!(info.volume_id, volume_id);
    assert_eq!(info.availability_zone, "us-east-1b");
    assert_eq!(info.volume_type, "gp3");
    assert_eq!(info.size_gib, 50);
    assert_eq!(info.iops, Some(3500));
    assert_eq!(info.throughput, Some(200));
    assert!(info.encrypted);
    assert_eq!(info.kms_key_id.as_deref(), Some(KMS_KEY));
    assert_eq!(info.state, "available");
    assert!(info.is_available());
    assert_eq!(info.snapshot_id, None);
    assert_eq!(
        sorted(info.tags),
        vec![
            pair("Name", "data-postgres-0"),
            pair("kubernetes.io/created-for/pvc/name", "data-postgres-0"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_is_tagged_at_creation_and_completes() {
    let Some(moto) = Moto::start() else { return };
    let volume_id = make_volume(
        &moto,
        &Source {
            size: 30,
            kms_key_id: Some(KMS_KEY),
            ..Source::default()
        },
    )
    .await;
    let proxy = FaultProxy::start(&moto.endpoint());
    let ec2 = adapter(&proxy.endpoint()).await;
    let tags = [
        pair("Name", "data-postgres-0"),
        // EC2 reserves aws: keys; a volume's CloudFormation tags must not fail the snapshot.
        pair("aws:cloudformation:stack-name", "eks-data"),
        pair("lifeboat.io/backup", "nightly-1"),
        pair("lifeboat.io/pvc", "db/data-postgres-0"),
        // The caller's own value for a repeated key wins.
        pair("Name", "lifeboat nightly-1 data-postgres-0"),
    ];

    let snapshot_id = ec2
        .create_snapshot(&volume_id, "lifeboat backup nightly-1", &tags)
        .await
        .expect("create the snapshot");
    let info = ec2
        .describe_snapshot(&snapshot_id)
        .await
        .expect("describe the snapshot");

    assert!(snapshot_id.starts_with("snap-"), "{snapshot_id}");
    assert_eq!(info.snapshot_id, snapshot_id);
    assert_eq!(info.volume_id.as_deref(), Some(volume_id.as_str()));
    assert_eq!(info.state, "completed");
    assert!(info.is_completed() && !info.is_failed());
    assert_eq!(info.volume_size_gib, Some(30));
    assert!(info.encrypted);
    assert!(info.start_time.is_some());
    assert_eq!(
        sorted(info.tags),
        vec![
            pair("Name", "lifeboat nightly-1 data-postgres-0"),
            pair("lifeboat.io/backup", "nightly-1"),
            pair("lifeboat.io/pvc", "db/data-postgres-0"),
        ]
    );
    let actions: Vec<String> = proxy
        .requests()
        .iter()
        .filter_map(|r| r.ec2_action().map(str::to_string))
        .collect();
    assert_eq!(actions, ["CreateSnapshot", "DescribeSnapshots"]);
    let create = &proxy.requests()[0];
    assert!(
        create
            .body
            .contains("TagSpecification.1.ResourceType=snapshot"),
        "tags travel with CreateSnapshot, so an untagged snapshot never exists: {}",
        create.body
    );
    assert_eq!(snapshots_of(&moto, &volume_id).await, [snapshot_id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_from_a_snapshot_in_another_zone_keeps_type_size_iops_and_tags() {
    let Some(moto) = Moto::start() else { return };
    let source = make_volume(
        &moto,
        &Source {
            zone: "us-east-1a",
            size: 40,
            iops: Some(3500),
            throughput: Some(200),
            ..Source::default()
        },
    )
    .await;
    let ec2 = adapter(&moto.endpoint()).await;
    let snapshot_id = ec2
        .create_snapshot(&source, "lifeboat", &[pair("lifeboat.io/backup", "b1")])
        .await
        .unwrap();

    let spec = NewVolume {
        snapshot_id: snapshot_id.clone(),
        availability_zone: "us-east-1c".into(),
        volume_type: "io2".into(),
        size_gib: 40,
        iops: Some(4000),
        // Recorded from a gp3 volume: io2 takes no throughput, so it must not be sent
        // (moto, like EC2, refuses it).
        throughput: Some(200),
        encrypted: false,
        kms_key_id: None,
        tags: vec![
            pair("lifeboat.io/backup", "b1"),
            pair("lifeboat.io/restore", "r1"),
        ],
    };
    let volume_id = ec2.create_volume(&spec).await.expect("create the volume");
    let info = ec2.describe_volume(&volume_id).await.unwrap();

    assert_ne!(volume_id, source);
    assert_eq!(info.availability_zone, "us-east-1c");
    assert_eq!(info.volume_type, "io2");
    assert_eq!(info.size_gib, 40);
    assert_eq!(info.iops, Some(4000));
    assert_eq!(info.throughput, None);
    assert_eq!(info.snapshot_id.as_deref(), Some(snapshot_id.as_str()));
    assert_eq!(
        sorted(info.tags),
        vec![
            pair("lifeboat.io/backup", "b1"),
            pair("lifeboat.io/restore", "r1"),
        ]
    );

    // gp2 takes neither IOPS nor throughput; a recorded baseline IOPS must not be sent.
    let gp2 = ec2
        .create_volume(&NewVolume {
            volume_type: "gp2".into(),
            iops: Some(120),
            throughput: Some(125),
            tags: Vec::new(),
            ..spec.clone()
        })
        .await
        .expect("create a gp2 volume");
    assert_eq!(ec2.describe_volume(&gp2).await.unwrap().volume_type, "gp2");

    // Encryption and the KMS key are passed through.
    let encrypted = ec2
        .create_volume(&NewVolume {
            volume_type: "gp3".into(),
            iops: Some(3500),
            throughput: Some(200),
            encrypted: true,
            kms_key_id: Some(KMS_KEY.into()),
            ..spec.clone()
        })
        .await
        .expect("create an encrypted volume");
    let info = ec2.describe_volume(&encrypted).await.unwrap();
    assert!(info.encrypted);
    assert_eq!(info.kms_key_id.as_deref(), Some(KMS_KEY));
    assert_eq!((info.iops, info.throughput), (Some(3500), Some(200)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_volumes_and_snapshots_are_not_found_and_deleting_them_is_fine() {
    let Some(moto) = Moto::start() else { return };
    let ec2 = adapter(&moto.endpoint()).await;

    let err = ec2
        .describe_volume("vol-0123456789abcdef0")
        .await
        .expect_err("no such volume");
    assert_eq!(err.kind(), Ec2ErrorKind::NotFound, "{err}");
    assert!(err.is_not_found());
    assert_eq!(err.code(), "InvalidVolume.NotFound");
    let text = err.to_string();
    assert!(
        text.starts_with("EC2 DescribeVolumes for volume vol-0123456789abcdef0 failed: the volume does not exist in region us-east-1"),
        "{text}"
    );

    let err = ec2
        .describe_snapshot("snap-0123456789abcdef0")
        .await
        .expect_err("no such snapshot");
    assert_eq!(err.kind(), Ec2ErrorKind::NotFound, "{err}");
    assert_eq!(err.code(), "InvalidSnapshot.NotFound");
    assert!(err.to_string().contains("snap-0123456789abcdef0"), "{err}");

    ec2.delete_snapshot("snap-0123456789abcdef0")
        .await
        .expect("deleting a missing snapshot is fine");
    ec2.delete_volume("vol-0123456789abcdef0")
        .await
        .expect("deleting a missing volume is fine");

    // Real ones go, and a second delete is harmless.
    let volume_id = make_volume(&moto, &Source::default()).await;
    let snapshot_id = ec2.create_snapshot(&volume_id, "x", &[]).await.unwrap();
    ec2.delete_snapshot(&snapshot_id).await.unwrap();
    assert!(snapshots_of(&moto, &volume_id).await.is_empty());
    ec2.delete_snapshot(&snapshot_id).await.unwrap();
    ec2.delete_volume(&volume_id).await.unwrap();
    assert!(!volume_exists(&moto, &volume_id).await);
    ec2.delete_volume(&volume_id).await.unwrap();

    // An empty id would list the whole region; it is refused before any request.
    let err = ec2.describe_volume("").await.expect_err("empty id");
    assert_eq!(err.kind(), Ec2ErrorKind::InvalidParameter);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_limit_exceeded_is_retried_until_it_succeeds() {
    let Some(moto) = Moto::start() else { return };
    let volume_id = make_volume(&moto, &Source::default()).await;
    let proxy = FaultProxy::start(&moto.endpoint());
    let rule = proxy.add(
        Rule::ec2_error(503, "RequestLimitExceeded", "Request limit exceeded.")
            .body_contains("Action=CreateSnapshot&")
            .times(3),
    );
    let ec2 = adapter(&proxy.endpoint()).await;

    let snapshot_id = ec2
        .create_snapshot(&volume_id, "x", &[])
        .await
        .expect("throttled three times, then created");

    assert_eq!(proxy.fired(rule), 3);
    let statuses: Vec<u16> = proxy
        .requests()
        .iter()
        .filter(|r| r.ec2_action() == Some("CreateSnapshot"))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [503, 503, 503, 200]);
    assert_eq!(snapshots_of(&moto, &volume_id).await, [snapshot_id]);
}

/// Retried for its code, not its status: EC2 also sends throttling codes with a 400, which the
/// SDK's status classifier alone would not retry. `SnapshotCreationPerVolumeRateExceeded` is
/// not in the SDK's list; lifeboat adds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_codes_are_retried_whatever_the_status() {
    let Some(moto) = Moto::start() else { return };
    let volume_id = make_volume(&moto, &Source::default()).await;
    let proxy = FaultProxy::start(&moto.endpoint());
    let ec2 = adapter(&proxy.endpoint()).await;
    for code in [
        "RequestLimitExceeded",
        "SnapshotCreationPerVolumeRateExceeded",
    ] {
        let rule = proxy.add(
            Rule::ec2_error(400, code, "Slow down.")
                .body_contains("Action=CreateSnapshot&")
                .times(2),
        );
        ec2.create_snapshot(&volume_id, code, &[])
            .await
            .unwrap_or_else(|e| panic!("{code} must be retried: {e}"));
        assert_eq!(proxy.fired(rule), 2, "{code}");
    }
    assert_eq!(snapshots_of(&moto, &volume_id).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_that_never_ends_fails_as_throttled_after_every_attempt() {
    let Some(moto) = Moto::start() else { return };
    let volume_id = make_volume(&moto, &Source::default()).await;
    let proxy = FaultProxy::start(&moto.endpoint());
    let rule =
        proxy.add(Rule::ec2_request_limit_exceeded().body_contains("Action=CreateSnapshot&"));
    let ec2 = AwsEc2::new(&Settings {
        max_attempts: 5,
        ..settings(&proxy.endpoint())
    })
    .await
    .unwrap();

    let err = ec2
        .create_snapshot(&volume_id, "x", &[])
        .await
        .expect_err("throttled for ever");

    assert_eq!(err.kind(), Ec2ErrorKind::Throttled, "{err}");
    assert!(err.is_retryable());
    assert_eq!(err.code(), "RequestLimitExceeded");
    assert!(err.to_string().contains("5 attempts"), "{err}");
    assert_eq!(proxy.fired(rule), 5);
    assert!(snapshots_of(&moto, &volume_id).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_operation_is_access_denied_with_the_iam_actions() {
    let Some(moto) = Moto::start() else { return };
    let volume_id = make_volume(&moto, &Source::default()).await;
    let proxy = FaultProxy::start(&moto.endpoint());
    let rule = proxy.add(
        Rule::ec2_error(
            403,
            "UnauthorizedOperation",
            "You are not authorized to perform this operation.",
        )
        .body_contains("Action=CreateSnapshot&"),
    );
    let ec2 = adapter(&proxy.endpoint()).await;

    let err = ec2
        .create_snapshot(&volume_id, "x", &[pair("lifeboat.io/backup", "b1")])
        .await
        .expect_err("refused");

    assert_eq!(err.kind(), Ec2ErrorKind::AccessDenied, "{err}");
    assert!(!err.is_retryable());
    assert_eq!(err.code(), "UnauthorizedOperation");
    assert_eq!(err.op(), "CreateSnapshot");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "EC2 CreateSnapshot for volume {volume_id} failed: access denied; the IAM role lifeboat runs as needs ec2:CreateSnapshot and ec2:CreateTags (see docs/iam-policy.json)"
        )),
        "{text}"
    );
    assert!(text.contains("HTTP 403 UnauthorizedOperation"), "{text}");
    assert_eq!(proxy.fired(rule), 1, "a refusal is not retried");
    assert!(snapshots_of(&moto, &volume_id).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_ec2_reports_pending_is_not_completed() {
    let Some(moto) = Moto::start() else { return };
    let volume_id = make_volume(&moto, &Source::default()).await;
    let proxy = FaultProxy::start(&moto.endpoint());
    let ec2 = adapter(&proxy.endpoint()).await;
    let snapshot_id = ec2.create_snapshot(&volume_id, "x", &[]).await.unwrap();
    assert!(
        ec2.describe_snapshot(&snapshot_id)
            .await
            .unwrap()
            .is_completed()
    );

    let rule = proxy.add(
        Rule::rewrite("<status>completed</status>", "<status>pending</status>")
            .body_contains("Action=DescribeSnapshots&"),
    );
    let info = ec2.describe_snapshot(&snapshot_id).await.unwrap();

    assert_eq!(proxy.fired(rule), 1);
    assert_eq!(info.state, "pending");
    assert!(!info.is_completed() && !info.is_failed());
    assert_eq!(info.snapshot_id, snapshot_id);
    assert_eq!(info.volume_id.as_deref(), Some(volume_id.as_str()));

    proxy.remove(rule);
    proxy.add(
        Rule::rewrite("<status>completed</status>", "<status>error</status>")
            .body_contains("Action=DescribeSnapshots&"),
    );
    assert!(
        ec2.describe_snapshot(&snapshot_id)
            .await
            .unwrap()
            .is_failed()
    );
}
