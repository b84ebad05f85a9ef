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

/// The longest text a tenant chose (an owner reference's name, a field manager, an API server
/// message echoing an object) that a status message or Event quotes whole.
const QUOTED_CHARS: usize = 128;

/// Text a tenant chose, as status messages, Events and logs show it: quoted and escaped (a line
/// break, a terminal escape or a bidi control cannot forge a line of ours), and cut to
/// [`QUOTED_CHARS`] characters (an Event note of more than 1 KiB is refused).
pub(crate) fn quoted(text: &str) -> String {
    match text.char_indices().nth(QUOTED_CHARS) {
        Some((end, _)) => format!("{:?}…", &text[..end]),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_text_is_quoted_escaped_and_cut() {
        assert_eq!(quoted("argocd"), "\"argocd\"");
        let forged = "x\"\nWarning  Synced  all good\u{1b}[2J\u{202e}";
        assert_eq!(quoted(forged), r#""x\"\nWarning  Synced  all good\u{1b}[2J\u{202e}""#);
        assert!(!quoted(forged).contains('\n'));
        let long = "é".repeat(1_000);
        assert_eq!(quoted(&long), format!("{:?}…", "é".repeat(QUOTED_CHARS)));
    }
}
