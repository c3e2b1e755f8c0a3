//! Text tables drawn exactly like `olekukonko/tablewriter` v0.0.x with its defaults, which is
//! what `calicoctl node status` uses (calico-bgp.md §5.1):
//!
//! * `+---+` borders, a rule under the header, one space of padding in each cell;
//! * headers centred (extra space goes right), cells left-aligned unless they look like a
//!   number (`^-?(\d{1,3}(,\d{3})*|\d+)(\.\d+)?$`), which are right-aligned;
//! * a cell wider than 30 columns is word-wrapped to 30 columns with tablewriter's
//!   minimal-raggedness line breaking (so `Active Socket: Connection refused` becomes
//!   `Active Socket: Connection` / `refused`, and the column is 30 wide).
//!
//! Widths count `char`s: the tables only hold ASCII (addresses, states, error texts).

/// tablewriter's `MAX_ROW_WIDTH`: cells wider than this are wrapped.
pub const MAX_CELL_WIDTH: usize = 30;

/// Renders a table (headers as given; callers pass them upper-case like tablewriter's
/// auto-format). Every line ends with `\n`.
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let ncols = headers.len();
    let mut widths = vec![0usize; ncols];
    let head: Vec<Vec<String>> = headers
        .iter()
        .enumerate()
        .map(|(c, h)| cell_lines(h, &mut widths[c]))
        .collect();
    let body: Vec<Vec<Vec<String>>> = rows
        .iter()
        .map(|row| {
            (0..ncols)
                .map(|c| cell_lines(row.get(c).map_or("", String::as_str), &mut widths[c]))
                .collect()
        })
        .collect();

    let mut out = String::new();
    let rule = {
        let mut s = String::from("+");
        for w in &widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s.push('\n');
        s
    };
    out.push_str(&rule);
    print_row(&mut out, &head, &widths, Align::Center);
    out.push_str(&rule);
    for row in &body {
        print_row(&mut out, row, &widths, Align::Auto);
    }
    out.push_str(&rule);
    out
}

#[derive(Clone, Copy)]
enum Align {
    Center,
    Auto,
}

fn print_row(out: &mut String, cells: &[Vec<String>], widths: &[usize], align: Align) {
    let height = cells.iter().map(Vec::len).max().unwrap_or(1);
    for x in 0..height {
        out.push('|');
        for (c, lines) in cells.iter().enumerate() {
            let s = lines.get(x).map_or("", String::as_str);
            out.push(' ');
            out.push_str(&match align {
                Align::Center => pad_center(s, widths[c]),
                Align::Auto if is_number(s.trim()) => pad_left(s, widths[c]),
                Align::Auto => pad_right(s, widths[c]),
            });
            out.push_str(" |");
        }
        out.push('\n');
    }
}

/// tablewriter `parseDimension` with auto-wrap and reflow on: returns the cell's lines and
/// widens `width` to fit them.
fn cell_lines(s: &str, width: &mut usize) -> Vec<String> {
    let raw: Vec<&str> = s.split('\n').collect();
    let mut max = raw.iter().map(|l| display_width(l)).max().unwrap_or(0);
    max = max.min(MAX_CELL_WIDTH);
    let lines = wrap_string(&raw.join(" "), max);
    let max = lines.iter().map(|l| display_width(l)).fold(max, usize::max);
    *width = (*width).max(max);
    lines
}

/// tablewriter `WrapString`: splits on single spaces and breaks lines with minimal
/// raggedness at `lim` columns (raised to the longest word).
pub fn wrap_string(s: &str, lim: usize) -> Vec<String> {
    let words: Vec<&str> = s.split(' ').collect();
    let lim = words.iter().map(|w| display_width(w)).fold(lim, usize::max);
    wrap_words(&words, 1, lim, 100_000)
        .into_iter()
        .map(|line| line.join(" "))
        .collect()
}

/// tablewriter `WrapWords`: dynamic programming over break points; the cost of a line is
/// the square of its slack, the last line is free, over-long lines pay `pen`.
fn wrap_words<'a>(words: &[&'a str], spc: usize, lim: usize, pen: i64) -> Vec<Vec<&'a str>> {
    let n = words.len();
    if n == 0 {
        return vec![];
    }
    // length(i, j): width of words[i..=j] joined by `spc`.
    let widths: Vec<usize> = words.iter().map(|w| display_width(w)).collect();
    let length =
        |i: usize, j: usize| -> usize { widths[i..=j].iter().sum::<usize>() + spc * (j - i) };
    let mut nbrk = vec![0usize; n];
    let mut cost = vec![i64::from(i32::MAX); n];
    for i in (0..n).rev() {
        if length(i, n - 1) <= lim {
            cost[i] = 0;
            nbrk[i] = n;
        } else {
            for j in i + 1..n {
                let len = length(i, j - 1);
                let d = lim as i64 - len as i64;
                let mut c = d * d + cost[j];
                if len > lim {
                    c += pen;
                }
                if c < cost[i] {
                    cost[i] = c;
                    nbrk[i] = j;
                }
            }
        }
    }
    let mut lines = Vec::new();
    let mut i = 0;
    while i < n {
        lines.push(words[i..nbrk[i]].to_vec());
        i = nbrk[i];
    }
    lines
}

fn display_width(s: &str) -> usize {
    s.chars().count()
}

fn pad_center(s: &str, width: usize) -> String {
    let gap = width.saturating_sub(display_width(s));
    let left = gap / 2;
    format!("{}{s}{}", " ".repeat(left), " ".repeat(gap - left))
}

fn pad_right(s: &str, width: usize) -> String {
    let gap = width.saturating_sub(display_width(s));
    format!("{s}{}", " ".repeat(gap))
}

fn pad_left(s: &str, width: usize) -> String {
    let gap = width.saturating_sub(display_width(s));
    format!("{}{s}", " ".repeat(gap))
}

/// tablewriter's `decimal` pattern `^-?(?:\d{1,3}(?:,\d{3})*|\d+)(?:\.\d+)?$` (its `percent`
/// pattern can never match, so it is left out).
fn is_number(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    if let Some(f) = frac
        && (f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if int.is_empty() {
        return false;
    }
    if int.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    // Thousands groups: 1-3 digits, then ",ddd" groups.
    let mut groups = int.split(',');
    let first = groups.next().unwrap_or("");
    (1..=3).contains(&first.len())
        && first.bytes().all(|b| b.is_ascii_digit())
        && groups.all(|g| g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_like_tablewriter() {
        assert_eq!(
            wrap_string("Active Socket: Connection refused", 30),
            vec!["Active Socket: Connection", "refused"]
        );
        assert_eq!(wrap_string("Established", 11), vec!["Established"]);
        assert_eq!(
            wrap_string("Connect Socket: Connection reset by peer", 30),
            vec!["Connect Socket: Connection", "reset by peer"]
        );
        // A word longer than the limit raises the limit.
        assert_eq!(
            wrap_string("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa b", 30),
            vec!["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "b"]
        );
    }

    #[test]
    fn numbers() {
        for s in ["0", "179", "-5", "1,234", "12,345,678", "1.5", "64512"] {
            assert!(is_number(s), "{s}");
        }
        for s in [
            "",
            "10.0.0.1",
            "1,23",
            "1234,567",
            "a1",
            "1.",
            "17:38:47",
            "2016-11-21",
        ] {
            assert!(!is_number(s), "{s}");
        }
    }

    #[test]
    fn simple_table() {
        let t = render_table(
            &["NAME", "COUNT"],
            &[
                vec!["a".into(), "7".into()],
                vec!["longer name".into(), "12345".into()],
            ],
        );
        assert_eq!(
            t,
            "\
+-------------+-------+
|    NAME     | COUNT |
+-------------+-------+
| a           |     7 |
| longer name | 12345 |
+-------------+-------+
"
        );
    }
}
