//! Plain aligned tables for people; bold headers only when colour is on.

use crate::text::sanitize;
use crate::text::width_of;

pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Table {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; every cell is sanitised, as it may come from the broker.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(
            cells
                .into_iter()
                .map(|c| sanitize::line(&c).into_owned())
                .collect(),
        );
    }

    pub fn render(&self, colour: bool) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| width_of(h)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(width_of(cell));
                }
            }
        }
        let line = |cells: Vec<&str>| {
            let mut out = String::new();
            for (i, cell) in cells.iter().enumerate() {
                out.push_str(cell);
                if i + 1 < cells.len() {
                    out.push_str(&" ".repeat(widths[i].saturating_sub(width_of(cell)) + 2));
                }
            }
            out.trim_end().to_string()
        };
        let mut out = String::new();
        let header = line(self.header.clone());
        if colour {
            out.push_str(&format!("\x1b[1m{header}\x1b[0m\n"));
        } else {
            out.push_str(&header);
            out.push('\n');
        }
        for row in &self.rows {
            out.push_str(&line(row.iter().map(String::as_str).collect()));
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_server_text_is_cleaned() {
        let mut table = Table::new(&["ROLE", "LEFT"]);
        table.row(vec!["prod-db-admin".into(), "29:41".into()]);
        table.row(vec!["x\x1b[2J".into(), "1:00".into()]);
        let text = table.render(false);
        assert_eq!(
            text,
            "ROLE           LEFT\nprod-db-admin  29:41\nx⟨U+001B⟩[2J   1:00\n"
        );
        assert!(table.render(true).starts_with("\x1b[1mROLE"));
    }
}
