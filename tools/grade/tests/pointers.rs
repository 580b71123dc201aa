//! Every check points at a heading of the course that exists: the file, and the anchor that
//! GitHub makes of the heading.

use std::path::Path;

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn every_pointer_names_an_existing_heading() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for check in grade::checks::all() {
        let (file, wanted) = check
            .teaches
            .split_once('#')
            .unwrap_or_else(|| panic!("{}: no #anchor in {}", check.name, check.teaches));
        let text = std::fs::read_to_string(root.join(file))
            .unwrap_or_else(|e| panic!("{}: cannot read {file}: {e}", check.name));
        let anchors: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with('#'))
            .map(|l| anchor(l.trim_start_matches('#')))
            .collect();
        assert!(
            anchors.iter().any(|a| a == wanted),
            "{}: {file} has no heading with anchor #{wanted}",
            check.name
        );
    }
}

#[test]
fn anchors_follow_github() {
    assert_eq!(
        anchor(" Bad input gets a status, not a crash"),
        "bad-input-gets-a-status-not-a-crash"
    );
    assert_eq!(
        anchor(" A bounded queue in front of `threadpool`"),
        "a-bounded-queue-in-front-of-threadpool"
    );
}
