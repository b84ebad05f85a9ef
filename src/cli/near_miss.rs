//! Near-miss names: a Secret name that is probably a typo of the one a Pod asks for.

/// Names close enough to `wanted` to be a typo of it (`reg-cred` for `regcred`), closest first.
pub(crate) fn near_misses<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let squash = |name: &str| name.chars().filter(|c| !matches!(c, '-' | '.' | '_')).collect::<String>();
    let mut close: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter(|candidate| *candidate != wanted)
        .filter_map(|candidate| {
            let distance = strsim::damerau_levenshtein(wanted, candidate);
            // Up to two edits, and never more than a third of the name: `db` is not a typo of `ab`.
            let typo = distance <= 2 && distance * 3 <= wanted.len().max(candidate.len());
            (typo || squash(wanted) == squash(candidate)).then_some((distance, candidate))
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
    }
}
