//! The progress line of large transfers (Swift objects, images): one line on stderr,
//! redrawn in place with `\r`, only when stderr is a terminal, so scripts and logs get
//! nothing but the results.

use std::io::IsTerminal;
use std::time::Instant;

/// `n` bytes in binary units (`512 B`, `1.5 MiB`).
pub fn human(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// Width of the bar between the brackets.
const WIDTH: usize = 30;

/// The progress line for `done` of `total` bytes of `name` after `secs` seconds (`total`
/// 0: unknown, no bar or percentage).
pub fn line(name: &str, done: u64, total: u64, secs: f64) -> String {
    let rate = done as f64 / secs.max(1e-3) / 1e6;
    if total == 0 {
        return format!("{name} {} {rate:.1} MB/s", human(done));
    }
    let pct = (done as f64 * 100.0 / total as f64).min(100.0);
    let filled = ((pct / 100.0 * WIDTH as f64) as usize).min(WIDTH);
    format!(
        "{name} [{}{}] {pct:5.1}% {} / {} {rate:.1} MB/s",
        "#".repeat(filled),
        " ".repeat(WIDTH - filled),
        human(done),
        human(total),
    )
}

/// A progress line on stderr for transfers of more than a given size, when stderr is a
/// terminal.
pub struct Progress {
    name: String,
    total: u64,
    done: u64,
    start: Instant,
    last: Instant,
    on: bool,
    /// Length of the last line drawn (a shorter one is padded to cover it).
    drawn: usize,
}

impl Progress {
    /// A progress line for `total` bytes of `name` (0: unknown), nothing done yet, shown
    /// only if `total` is above `min_total` (or unknown) and stderr is a terminal.
    pub fn new(name: &str, total: u64, min_total: u64) -> Self {
        let now = Instant::now();
        Self {
            name: name.to_string(),
            total,
            done: 0,
            start: now,
            last: now,
            on: (total == 0 || total > min_total) && std::io::stderr().is_terminal(),
            drawn: 0,
        }
    }

    /// Counts `n` more bytes done, redrawing the line at most every 200 ms (and at the end).
    pub fn add(&mut self, n: u64) {
        self.done += n;
        if self.on && (self.last.elapsed().as_millis() > 200 || self.done == self.total) {
            self.draw();
        }
    }

    fn draw(&mut self) {
        self.last = Instant::now();
        let l = line(
            &self.name,
            self.done,
            self.total,
            self.start.elapsed().as_secs_f64(),
        );
        let pad = self.drawn.saturating_sub(l.chars().count());
        self.drawn = l.chars().count();
        eprint!("\r{l}{}", " ".repeat(pad));
    }

    /// Ends the line, if one was drawn (drawn once more, so it shows the final count).
    pub fn finish(&mut self) {
        if self.on && self.drawn > 0 {
            self.draw();
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(20 << 20), "20.0 MiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }

    #[test]
    fn the_line_shows_bar_percentage_bytes_and_rate() {
        let l = line("img", 10 << 20, 20 << 20, 2.0);
        assert_eq!(
            l,
            format!(
                "img [{}{}]  50.0% 10.0 MiB / 20.0 MiB 5.2 MB/s",
                "#".repeat(15),
                " ".repeat(15)
            )
        );
        let full = line("img", 20 << 20, 20 << 20, 1.0);
        assert!(
            full.contains(&format!("[{}] 100.0%", "#".repeat(30))),
            "{full}"
        );
        // More than announced never draws past the end.
        assert!(line("x", 30, 20, 1.0).contains("100.0%"));
        // Unknown total: bytes and rate only; no division by a zero time.
        assert_eq!(line("x", 2_000_000, 0, 0.0), "x 1.9 MiB 2000.0 MB/s");
    }
}
