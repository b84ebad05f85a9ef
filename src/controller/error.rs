//! What a reconcile can fail with. A namespace's own failures are outcomes (`state`), not errors:
//! these end a reconcile and go to the error policies.

use thiserror::Error;

#[derive(Debug, Error)]
pub(crate) enum Error {
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("writing status: {0}")]
    Status(#[source] kube::Error),
    #[error("cleanup incomplete: {0}")]
    Cleanup(String),
    #[error("reading the source Secret: {0}")]
    SourceRead(#[source] kube::Error),
    #[error("waiting for caches the operator cannot list: {0}")]
    CachesNotListed(String),
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;
