//! Printing results: Markdown tables (they paste into BENCHMARKS.md as they are).

/// A table with a title, printed as Markdown with aligned columns.
pub struct Table {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: &str, header: &[&str]) -> Self {
        Self { title: title.into(), header: header.iter().map(|h| (*h).to_owned()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.header.len(), "a row of {} cells in {}", cells.len(), self.title);
        self.rows.push(cells);
    }

    pub fn print(&self) {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|c| self.rows.iter().map(|r| r[c].len()).chain([self.header[c].len()]).max().unwrap_or(0))
            .collect();
        let line = |cells: &[String]| {
            let cells: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            println!("| {} |", cells.join(" | "));
        };
        println!("\n### {}\n", self.title);
        line(&self.header);
        println!("|{}|", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|"));
        for row in &self.rows {
            line(row);
        }
        println!();
    }
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// `value` KiB as MiB with one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// "met" or "MISSED".
pub fn verdict(met: bool) -> String {
    if met { "met" } else { "MISSED" }.to_owned()
}

/// One of the targets, as measured.
pub struct Check {
    pub target: String,
    pub measured: String,
    pub met: bool,
}

impl Check {
    pub fn new(target: &str, measured: String, met: bool) -> Self {
        Self { target: target.into(), measured, met }
    }
}

/// Prints the targets table.
pub fn print_checks(checks: &[Check]) {
    let mut table = Table::new("Targets", &["target", "measured", "verdict"]);
    for check in checks {
        table.row(vec![check.target.clone(), check.measured.clone(), verdict(check.met)]);
    }
    table.print();
}
