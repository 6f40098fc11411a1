//! Lookalike names. Two names collide when they are equal after folding case, dropping the
//! separators `-`, `_` and `.`, and mapping characters and pairs that read alike (`0`/`o`,
//! `1`/`l`/`i`, `rn`/`m`, `vv`/`w`, ...) to one spelling. The registry refuses a new name
//! that collides with any existing name, whoever owns it, so `text_transform`,
//! `Text-Transform` and `text-transf0rm` cannot squat on `text-transform`.
//!
//! Package names are ASCII already (`warden_host::package::validate_name`), so Unicode
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

#[cfg(test)]
mod tests {
    use super::skeleton;

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
