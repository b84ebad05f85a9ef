//! Near-miss names: a Secret name that is probably a typo of the one a Pod asks for.

/// The longest name of a Kubernetes object (a DNS subdomain). Longer names are no object's; the
/// edit distance, quadratic in length, is computed for none of them.
const MAX_NAME_LENGTH: usize = 253;
/// The most edits a typo makes.
const MAX_EDITS: usize = 2;

/// Names close enough to `wanted` to be a typo of it (`reg-cred` for `regcred`), closest first.
pub(crate) fn near_misses<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let squash = |name: &str| name.chars().filter(|c| !matches!(c, '-' | '.' | '_')).collect::<String>();
    let squashed = squash(wanted);
    let mut close: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter(|candidate| *candidate != wanted)
        .filter_map(|candidate| {
            let comparable = wanted.len().max(candidate.len()) <= MAX_NAME_LENGTH
                && wanted.len().abs_diff(candidate.len()) <= MAX_EDITS;
            let distance = if comparable { strsim::damerau_levenshtein(wanted, candidate) } else { usize::MAX };
            // Up to two edits, and never more than a third of the name: `db` is not a typo of `ab`.
            let typo = distance <= MAX_EDITS && distance * 3 <= wanted.len().max(candidate.len());
            (typo || squashed == squash(candidate)).then_some((distance, candidate))
        })
        .collect();
    close.sort();
    close.dedup();
    close.into_iter().map(|(_, name)| name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_are_typos_closest_first() {
        assert_eq!(near_misses("regcred", ["reg-cred", "other", "regcred"]), vec!["reg-cred"]);
        assert_eq!(near_misses("regcred", ["regcerd", "reg-cred-old", "reg_cred"]), vec!["reg_cred", "regcerd"]);
        assert!(near_misses("ab", ["db", "cd"]).is_empty());
        assert_eq!(near_misses("pull-secret", ["pullsecret", "pull.secret"]), vec!["pull.secret", "pullsecret"]);
        assert_eq!(near_misses("a-b-c-d-e", ["abcde"]), vec!["abcde"], "squashed alike, four characters apart");
    }

    #[test]
    fn names_no_object_can_have_are_compared_in_linear_time() {
        // Two megabytes of names: an edit distance would take a matrix of 10^12 cells.
        let wanted = "a".repeat(1_000_000);
        let candidate = format!("{}b", "a".repeat(999_999));
        assert!(near_misses(&wanted, [candidate.as_str()]).is_empty());
        let separated = format!("{}-", "a".repeat(1_000_000));
        assert_eq!(near_misses(&wanted, [separated.as_str()]), vec![separated.as_str()], "squashed alike");
    }
}
