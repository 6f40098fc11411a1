//! Lookalike names. Two names collide when they are equal after folding case, dropping the
//! separators `-`, `_` and `.`, and mapping characters and pairs that read alike (`0`/`o`,
//! `1`/`l`/`i`, `rn`/`m`, `vv`/`w`, ...) to one spelling. The registry refuses a new name
//! that collides with any existing name, whoever owns it, so `text_transform`,
//! `Text-Transform` and `text-transf0rm` cannot squat on `text-transform`.
//!
//! Beyond that, a new name is refused when its skeleton is a near miss of another publisher's
//! name ([`near_miss`]): one letter inserted, deleted or replaced, or two neighbours swapped.
//! Short skeletons (under [`MIN_EDIT_LENGTH`] characters) collide only by a swap: one edit
//! away from a short name is most short names.
//!
//! Package names are ASCII already (`warden_package::validate_name`), so Unicode
//! confusables never reach this point; non-ASCII characters are still folded through
//! a short table of the common Latin lookalikes for names that come from elsewhere.

/// The form two names share when they are confusable.
pub fn skeleton(name: &str) -> String {
    let mut folded = String::with_capacity(name.len());
    for character in name.chars().flat_map(char::to_lowercase) {
        match character {
            '-' | '_' | '.' | ' ' => {}
            '0' | 'о' | 'ο' => folded.push('o'),
            '1' | 'i' | 'ı' | 'і' | '|' | '!' => folded.push('l'),
            '3' => folded.push('e'),
            '4' | 'а' | 'α' => folded.push('a'),
            '5' | '$' => folded.push('s'),
            '7' => folded.push('t'),
            '8' => folded.push('b'),
            '9' => folded.push('g'),
            'е' | 'ε' => folded.push('e'),
            'с' => folded.push('c'),
            'р' | 'ρ' => folded.push('p'),
            'х' | 'χ' => folded.push('x'),
            'у' => folded.push('y'),
            other => folded.push(other),
        }
    }
    // Pairs that read as one letter.
    folded
        .replace("rn", "m")
        .replace("vv", "w")
        .replace("cl", "d")
}

/// Skeletons shorter than this collide only by a swap of neighbours, not by one edit.
pub const MIN_EDIT_LENGTH: usize = 5;

/// Whether two (different) skeletons are a typo apart: one insertion, deletion or substitution,
/// or one swap of adjacent characters (the Damerau-Levenshtein distance is 1). Equal skeletons
/// are a collision already, not a near miss.
pub fn near_miss(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a == b {
        return false;
    }
    if swapped_neighbours(&a, &b) {
        return true;
    }
    a.len().min(b.len()) >= MIN_EDIT_LENGTH - 1
        && a.len().max(b.len()) >= MIN_EDIT_LENGTH
        && one_edit(&a, &b)
}

/// Equal but for two adjacent characters swapped.
fn swapped_neighbours(a: &[char], b: &[char]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let differ: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
    matches!(differ.as_slice(), [i, j] if *j == i + 1 && a[*i] == b[*j] && a[*j] == b[*i])
}

/// One insertion, deletion or substitution apart.
fn one_edit(a: &[char], b: &[char]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if long.len() - short.len() > 1 {
        return false;
    }
    let prefix = short
        .iter()
        .zip(long.iter())
        .take_while(|(x, y)| x == y)
        .count();
    if short.len() == long.len() {
        short[prefix + 1..] == long[prefix + 1..]
    } else {
        short[prefix..] == long[prefix + 1..]
    }
}

#[cfg(test)]
mod tests {
    use super::{near_miss, skeleton};

    #[test]
    fn typos_are_near_misses() {
        let base = skeleton("text-transform");
        for typo in [
            "text-transfrom",  // swap
            "text-transfor",   // deletion
            "text-transforms", // insertion
            "text-transfarm",  // substitution
            "ext-transform",
        ] {
            assert!(near_miss(&skeleton(typo), &base), "{typo}");
        }
        for far in [
            "text-transformer",
            "text-trans",
            "counter",
            "text-transform",
        ] {
            assert!(!near_miss(&skeleton(far), &base), "{far}");
        }
    }

    #[test]
    fn short_names_collide_only_by_a_swap() {
        assert!(near_miss("json", "jsno"));
        assert!(!near_miss("json", "jsan"));
        assert!(!near_miss("abc", "abd"));
        assert!(!near_miss("ab", "abc"));
        // Five characters: single edits count, also to or from four.
        assert!(near_miss("yaml5", "yaml6"));
        assert!(near_miss("yaml", "yamls"));
        assert!(!near_miss("", "a"));
    }

    #[test]
    fn lookalikes_collide() {
        let base = skeleton("text-transform");
        for lookalike in [
            "text_transform",
            "text.transform",
            "texttransform",
            "Text-Transform",
            "text-transf0rm",
            "text-transforrn",
            "tеxt-transform", // Cyrillic е
        ] {
            assert_eq!(skeleton(lookalike), base, "{lookalike}");
        }
        assert_eq!(skeleton("wallet"), skeleton("vva11et"));
        assert_eq!(skeleton("cloud"), skeleton("doud"));
    }

    #[test]
    fn different_names_do_not() {
        assert_ne!(skeleton("text-transform"), skeleton("text-transformer"));
        assert_ne!(skeleton("counter"), skeleton("greeter"));
    }
}
