//! Escaping text for the HTML view: every name in the page (task names, span names, code
//! locations, evidence) is user input, and goes through [`text`] or [`attr`].

/// `s` for HTML text and attribute values (double- or single-quoted): `&`, `<`, `>`, `"` and `'`
/// become character references, everything else is kept as it is.
pub(crate) fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push(&mut out, s);
    out
}

/// [`text`], for attribute values (the same escaping: one function, two names for reading).
pub(crate) fn attr(s: &str) -> String {
    text(s)
}

/// Appends `s` escaped to `out`.
pub(crate) fn push(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than tab and newline have no business in a name; they
            // would make the document invalid.
            c if c.is_control() && c != '\t' && c != '\n' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

/// `s` cut to `max` characters (on a character boundary), marked with "…" when cut: labels in
/// the drawings stay inside their boxes (the full text goes in a tooltip).
pub(crate) fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max.saturating_sub(1)) {
        Some((i, _)) if s[i..].chars().count() > 1 => {
            let mut out = s[..i].to_owned();
            out.push('…');
            out
        }
        _ => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_characters_in_names_are_escaped() {
        assert_eq!(
            text(r#"<script>alert("x")</script> & 'quoted'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;quoted&#39;"
        );
        assert_eq!(attr(r#"a"b"#), "a&quot;b");
        // Already escaped text is escaped again: names are data, never markup.
        assert_eq!(text("&amp;"), "&amp;amp;");
        assert_eq!(
            text("plain name::with/route {http.route=/a}"),
            "plain name::with/route {http.route=/a}"
        );
        assert_eq!(text("nul\u{0}bell\u{7}"), "nul\u{fffd}bell\u{fffd}");
        assert_eq!(text("ünïcödé ✓"), "ünïcödé ✓");
    }

    #[test]
    fn clipping_keeps_short_names_and_marks_cut_ones() {
        assert_eq!(clip("short", 8), "short");
        assert_eq!(clip("exactly8", 8), "exactly8");
        assert_eq!(clip("nine char", 8), "nine ch…");
        assert_eq!(clip("éééééééééé", 4), "ééé…");
        assert_eq!(clip("", 4), "");
    }
}
