//! Rules for text that must stay on one line: names, titles, references,
//! subjects. A line break there would break receipts, tables and email
//! headers.

/// Whether `text` holds a control character (a line break, a tab, …).
pub fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// `text` on one line: control characters (a quoted CSV field or a stored
/// name may hold line breaks and tabs) and runs of whitespace become single
/// spaces, and the ends are trimmed.
pub fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_folds_breaks_tabs_and_runs_of_spaces() {
        assert_eq!(one_line("  Big\r\n\tMug  \u{7}x "), "Big Mug x");
        assert_eq!(one_line("Café Zoë"), "Café Zoë");
        assert!(has_control("a\nb"));
        assert!(!has_control("a b"));
    }
}
