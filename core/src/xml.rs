//! Text placed in XML that others read: Swift's XML listings and bulk reports, libvirt's
//! domain documents. Names there are the user's, so every one is escaped.

/// `s` made safe inside an XML element or a quoted attribute.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn markup_characters_are_escaped() {
        assert_eq!(super::escape("a<'&\">é"), "a&lt;&apos;&amp;&quot;&gt;é");
    }
}
