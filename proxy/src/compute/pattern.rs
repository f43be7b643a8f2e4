//! Nova's `name` filter: a Python regular expression searched (not anchored) in each
//! server's name. `openstack server show NAME` sends the plain name and then keeps the
//! exact match among the answers, so what matters is that a name matches itself; a
//! pattern is honoured as far as this subset goes, without a regex engine:
//!
//! - literals, `.`, classes `[a-z0-9_-]` and `[^…]`, the escapes `\d \w \s \D \W \S` and
//!   `\` before any other character (that character, literally);
//! - the quantifiers `*`, `+` and `?` after any of those;
//! - `^` first and `$` last (anchors; elsewhere they are literal characters).
//!
//! A pattern with anything else — groups, alternation, counted repetition `{m,n}`, a
//! dangling quantifier or an unclosed class — is matched as a plain substring, which is
//! what such a "pattern" almost always is in practice (a name with brackets in it).
//!
//! Matching runs the pattern as a set of states over the name (Thompson's construction,
//! no backtracking), so it takes time linear in the name for every pattern.

/// One position of a pattern: what a character must be.
#[derive(Debug, Clone, PartialEq)]
enum Atom {
    Any,
    Char(char),
    /// A class: its items, and whether it is negated.
    Class(Vec<Item>, bool),
}

/// One item of a class.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Range(char, char),
    /// `\d`, `\w`, `\s` (and negated: `\D`, `\W`, `\S`).
    Digit(bool),
    Word(bool),
    Space(bool),
}

impl Item {
    fn matches(&self, c: char) -> bool {
        match *self {
            Item::Range(a, b) => a <= c && c <= b,
            Item::Digit(neg) => c.is_ascii_digit() != neg,
            Item::Word(neg) => (c.is_alphanumeric() || c == '_') != neg,
            Item::Space(neg) => c.is_whitespace() != neg,
        }
    }
}

impl Atom {
    fn matches(&self, c: char) -> bool {
        match self {
            Atom::Any => c != '\n',
            Atom::Char(x) => *x == c,
            Atom::Class(items, neg) => items.iter().any(|i| i.matches(c)) != *neg,
        }
    }
}

/// An atom with its quantifier: `optional` (may be skipped), `many` (may repeat).
#[derive(Debug, Clone, PartialEq)]
struct Step {
    atom: Atom,
    optional: bool,
    many: bool,
}

/// A compiled `name` filter.
#[derive(Debug, Clone, PartialEq)]
pub struct NameFilter(Kind);

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// The supported subset.
    Pattern {
        steps: Vec<Step>,
        start: bool,
        end: bool,
    },
    /// Anything else, searched for as it is.
    Substring(String),
}

/// The escape after `\`, as an atom (or a class item inside `[…]`).
fn escape(c: char) -> Item {
    match c {
        'd' => Item::Digit(false),
        'D' => Item::Digit(true),
        'w' => Item::Word(false),
        'W' => Item::Word(true),
        's' => Item::Space(false),
        'S' => Item::Space(true),
        c => Item::Range(c, c),
    }
}

/// Parses `[…]` after its `[`; `None` if unclosed.
fn class(it: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<Atom> {
    let negated = it.next_if_eq(&'^').is_some();
    let mut items = Vec::new();
    let mut first = true;
    loop {
        let c = it.next()?;
        let item = match c {
            ']' if !first => return Some(Atom::Class(items, negated)),
            '\\' => escape(it.next()?),
            c => Item::Range(c, c),
        };
        first = false;
        // A range `a-z` (a `-` before `]` is literal).
        if let Item::Range(lo, _) = item {
            if it.peek() == Some(&'-') {
                let mut ahead = it.clone();
                ahead.next();
                match ahead.peek() {
                    Some(&']') | None => {}
                    Some(&hi) => {
                        it.next();
                        it.next();
                        let hi = if hi == '\\' {
                            match it.next().map(escape)? {
                                Item::Range(h, _) => h,
                                _ => return None,
                            }
                        } else {
                            hi
                        };
                        if hi < lo {
                            return None;
                        }
                        items.push(Item::Range(lo, hi));
                        continue;
                    }
                }
            }
        }
        items.push(item);
    }
}

/// Compiles the subset; `None` when the pattern uses anything outside it.
fn compile_subset(p: &str) -> Option<(Vec<Step>, bool, bool)> {
    let (start, body) = match p.strip_prefix('^') {
        Some(rest) => (true, rest),
        None => (false, p),
    };
    // A trailing `$` is the anchor unless escaped.
    let (end, body) = match body.strip_suffix('$') {
        Some(rest) if !rest.ends_with('\\') || rest.ends_with("\\\\") => (true, rest),
        _ => (false, body),
    };
    let mut steps: Vec<Step> = Vec::new();
    let mut it = body.chars().peekable();
    while let Some(c) = it.next() {
        let atom = match c {
            '.' => Atom::Any,
            '[' => class(&mut it)?,
            '\\' => match escape(it.next()?) {
                Item::Range(c, _) => Atom::Char(c),
                item => Atom::Class(vec![item], false),
            },
            '(' | ')' | '|' | '{' | '}' => return None,
            '*' | '+' | '?' => return None, // nothing to repeat
            c => Atom::Char(c),
        };
        match it.peek() {
            Some('*') => {
                it.next();
                steps.push(Step {
                    atom,
                    optional: true,
                    many: true,
                });
            }
            Some('+') => {
                it.next();
                steps.push(Step {
                    atom: atom.clone(),
                    optional: false,
                    many: false,
                });
                steps.push(Step {
                    atom,
                    optional: true,
                    many: true,
                });
            }
            Some('?') => {
                it.next();
                steps.push(Step {
                    atom,
                    optional: true,
                    many: false,
                });
            }
            _ => steps.push(Step {
                atom,
                optional: false,
                many: false,
            }),
        }
        // Lazy or possessive suffixes (`*?`, `++`) and stacked quantifiers are not in the
        // subset.
        if matches!(it.peek(), Some('*' | '+' | '?')) {
            return None;
        }
    }
    Some((steps, start, end))
}

impl NameFilter {
    /// Compiles a `name` filter.
    pub fn new(p: &str) -> Self {
        match compile_subset(p) {
            Some((steps, start, end)) => NameFilter(Kind::Pattern { steps, start, end }),
            None => NameFilter(Kind::Substring(p.to_string())),
        }
    }

    /// Whether `name` matches (anywhere in it, unless anchored).
    pub fn is_match(&self, name: &str) -> bool {
        let (steps, start, end) = match &self.0 {
            Kind::Substring(s) => return name.contains(s.as_str()),
            Kind::Pattern { steps, start, end } => (steps, *start, *end),
        };
        let n = steps.len();
        // `on[i]`: the pattern has matched up to step `i`.
        let mut on = vec![false; n + 1];
        let mut next = vec![false; n + 1];
        let close = |set: &mut Vec<bool>| {
            for i in 0..n {
                if set[i] && steps[i].optional {
                    set[i + 1] = true;
                }
            }
        };
        on[0] = true;
        close(&mut on);
        for c in name.chars() {
            if on[n] && !end {
                return true;
            }
            next.iter_mut().for_each(|b| *b = false);
            for i in 0..n {
                if on[i] && steps[i].atom.matches(c) {
                    if steps[i].many {
                        next[i] = true;
                    } else {
                        next[i + 1] = true;
                    }
                }
            }
            if !start {
                // Unanchored: a match may begin at the next character.
                next[0] = true;
            }
            close(&mut next);
            std::mem::swap(&mut on, &mut next);
        }
        on[n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        NameFilter::new(p).is_match(s)
    }

    #[test]
    fn a_name_matches_itself_and_what_contains_it() {
        assert!(m("s1", "s1"));
        assert!(m("s1", "test-s1-b"));
        assert!(!m("s1", "s2"));
        assert!(m("", "anything"));
        assert!(m("web.example", "web.example"));
        // `.` is any character, as in Nova.
        assert!(m("web.example", "webXexample"));
    }

    #[test]
    fn the_subset_of_regular_expressions() {
        assert!(m("^s1$", "s1"));
        assert!(!m("^s1$", "s10"));
        assert!(!m("^s1", "as1"));
        assert!(m("1$", "s1"));
        assert!(!m("1$", "s12"));
        assert!(m("^web-[0-9]+$", "web-042"));
        assert!(!m("^web-[0-9]+$", "web-"));
        assert!(!m("^web-[0-9]+$", "web-4a"));
        assert!(m("^a.*z$", "az"));
        assert!(m("^a.*z$", "abcz"));
        assert!(m("colou?r", "color"));
        assert!(m("colou?r", "colour"));
        assert!(m("^\\d\\d-\\w+$", "42-ab_c"));
        assert!(!m("^\\d\\d-\\w+$", "4x-ab"));
        assert!(m("[^a-z]", "abc1"));
        assert!(!m("^[^a-z]+$", "abc1"));
        assert!(m("a\\.b", "a.b"));
        assert!(!m("a\\.b", "axb"));
        assert!(m("^[a-]+$", "a-a"));
        assert!(m("^x\\$$", "x$"));
    }

    #[test]
    fn anything_else_is_a_plain_substring() {
        for p in ["(a|b)", "a{2}", "*x", "[abc", "a**", "vm(1)", "a+?"] {
            assert!(matches!(NameFilter::new(p).0, Kind::Substring(_)), "{p}");
        }
        assert!(m("vm(1)", "my vm(1)"));
        assert!(!m("(a|b)", "a"));
    }

    #[test]
    fn matching_is_linear_on_patterns_that_make_backtrackers_explode() {
        let name = "a".repeat(5000);
        let p = format!("{}{}b", "a?".repeat(50), "a".repeat(50));
        assert!(!m(&p, &name));
        assert!(m(&p, &format!("{name}b")));
    }
}
