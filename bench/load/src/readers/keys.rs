//! The demo keys file the local stack writes (`latch demo seed --out FILE`): shell lines
//! `NAME=value`. The readers take every `LATCH_DEMO_READER_KEY*` line as a reader key and
//! every `LATCH_DEMO_CARD_*` line as a card, in file order; everything else (the admin
//! token, the site) is ignored and never kept.
//!
//! Parsing is lenient in what a hand-edited shell file may hold (blank lines, comments,
//! `export`, quotes) and strict in nothing else: a line that is not an assignment is
//! skipped, because the file is shared with other tools.

use std::path::Path;

use anyhow::Context;
use latch_core::config::Secret;

/// The prefix of the reader-key variables (`LATCH_DEMO_READER_KEY`,
/// `LATCH_DEMO_READER_KEY_SERVER_ROOM`, …).
pub const READER_KEY_PREFIX: &str = "LATCH_DEMO_READER_KEY";
/// The prefix of the card variables (`LATCH_DEMO_CARD_GRANTED`, …).
pub const CARD_PREFIX: &str = "LATCH_DEMO_CARD_";

/// What a keys file offers the readers.
#[derive(Debug, Default)]
pub struct DemoKeys {
    pub reader_keys: Vec<Secret<String>>,
    pub cards: Vec<String>,
}

impl DemoKeys {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> anyhow::Result<DemoKeys> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the keys file {}", path.display()))?;
        Ok(DemoKeys::parse(&text))
    }

    /// Parses the text of a keys file. Repeated values are kept once.
    pub fn parse(text: &str) -> DemoKeys {
        let mut keys = DemoKeys::default();
        for (name, value) in text.lines().filter_map(assignment) {
            if value.is_empty() {
                continue;
            }
            if name.starts_with(READER_KEY_PREFIX) {
                if !keys.reader_keys.iter().any(|key| key.expose() == value) {
                    keys.reader_keys.push(Secret::new(value.to_owned()));
                }
            } else if name.starts_with(CARD_PREFIX) && !keys.cards.iter().any(|c| c == value) {
                keys.cards.push(value.to_owned());
            }
        }
        keys
    }
}

/// `NAME=value` from one line, without `export`, surrounding quotes or blanks.
fn assignment(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    if line.starts_with('#') {
        return None;
    }
    let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
    let (name, value) = line.split_once('=')?;
    let name = name.trim_end();
    let is_name = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !is_name {
        return None;
    }
    let value = value.trim();
    let unquoted = ['"', '\'']
        .into_iter()
        .find_map(|q| value.strip_prefix(q)?.strip_suffix(q))
        .unwrap_or(value);
    Some((name, unquoted))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: &str = "\
LATCH_DEMO_SITE=hq
LATCH_DEMO_ADMIN_TOKEN=lat_admin
LATCH_DEMO_READER_KEY=lrk_main
LATCH_DEMO_READER_KEY_SERVER_ROOM=lrk_server
LATCH_DEMO_READER_KEY_LOADING_DOCK=lrk_dock
LATCH_DEMO_CARD_GRANTED=CARD-1001
LATCH_DEMO_CARD_EXPIRED=CARD-1003
LATCH_DEMO_CARD_INACTIVE=CARD-1004
LATCH_DEMO_CARD_UNKNOWN=CARD-9999
";

    fn exposed(keys: &DemoKeys) -> Vec<&str> {
        keys.reader_keys
            .iter()
            .map(|k| k.expose().as_str())
            .collect()
    }

    #[test]
    fn takes_every_reader_key_and_card_of_the_demo_file_in_order() {
        let keys = DemoKeys::parse(DEMO);
        assert_eq!(exposed(&keys), ["lrk_main", "lrk_server", "lrk_dock"]);
        assert_eq!(
            keys.cards,
            ["CARD-1001", "CARD-1003", "CARD-1004", "CARD-9999"]
        );
    }

    #[test]
    fn tolerates_what_a_hand_edited_shell_file_holds() {
        let keys = DemoKeys::parse(
            "# written by hand\n\n  export LATCH_DEMO_READER_KEY='lrk_q'\n\
             LATCH_DEMO_CARD_A = \"CARD-A\"\nnot an assignment\nLATCH_DEMO_CARD_B=\n\
             LATCH_DEMO_CARD_C=CARD-A\nLATCH_DEMO_READER_KEYS_TXT=lrk_q\n",
        );
        assert_eq!(exposed(&keys), ["lrk_q"]);
        assert_eq!(keys.cards, ["CARD-A"]);
    }

    #[test]
    fn ignores_everything_else() {
        let keys = DemoKeys::parse("LATCH_DEMO_ADMIN_TOKEN=lat_x\nOTHER_CARD_X=1\n");
        assert!(keys.reader_keys.is_empty() && keys.cards.is_empty());
    }

    #[test]
    fn debug_never_shows_a_key() {
        let keys = DemoKeys::parse(DEMO);
        assert!(!format!("{keys:?}").contains("lrk_"));
    }
}
