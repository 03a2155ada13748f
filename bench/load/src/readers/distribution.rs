//! The whole latency distribution of a [`LoadReport`], written for plotting CDFs: CSV,
//! or HdrHistogram's percentile text. Values are milliseconds, recorded in microseconds.
//! This module only formats; the histogram is the report's.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::report::{LoadReport, US_PER_MS, ms};

/// Quantile steps per halving of the distance to 100%, as HdrHistogram's own output uses.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

impl LoadReport {
    /// Writes the latency distribution to `path`, in milliseconds: CSV
    /// (`value_ms,percentile,total_count`) when the name ends in `.csv`, otherwise
    /// HdrHistogram's percentile text (as `outputPercentileDistribution` writes it, which
    /// HdrHistogram's plotters read).
    pub fn write_distribution(&self, path: &Path) -> anyhow::Result<()> {
        let csv = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("csv"));
        let mut out = Vec::new();
        if csv {
            self.distribution_csv(&mut out)?;
        } else {
            self.distribution_hgrm(&mut out)?;
        }
        std::fs::write(path, out)
            .with_context(|| format!("cannot write the histogram to {}", path.display()))
    }

    fn distribution_csv(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(out, "value_ms,percentile,total_count")?;
        let mut total = 0;
        for step in self.histogram.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            total += step.count_since_last_iteration();
            let value = ms(step.value_iterated_to());
            let percentile = step.quantile_iterated_to() * 100.0;
            writeln!(out, "{value:.3},{percentile:.6},{total}")?;
        }
        Ok(())
    }

    fn distribution_hgrm(&self, out: &mut impl Write) -> std::io::Result<()> {
        let h = &self.histogram;
        writeln!(
            out,
            "{:>12} {:>14} {:>10} {:>14}\n",
            "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
        )?;
        let mut total = 0;
        for step in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            total += step.count_since_last_iteration();
            let value = ms(step.value_iterated_to());
            let quantile = step.quantile_iterated_to();
            if quantile < 1.0 {
                let inverse = 1.0 / (1.0 - quantile);
                writeln!(
                    out,
                    "{value:12.3} {quantile:2.12} {total:10} {inverse:14.2}"
                )?;
            } else {
                writeln!(out, "{value:12.3} {quantile:2.12} {total:10}")?;
            }
        }
        let (mean, stdev, max) = if h.is_empty() {
            (0.0, 0.0, 0.0)
        } else {
            (h.mean() / US_PER_MS, h.stdev() / US_PER_MS, ms(h.max()))
        };
        writeln!(
            out,
            "#[Mean    = {mean:12.3}, StdDeviation   = {stdev:12.3}]"
        )?;
        writeln!(
            out,
            "#[Max     = {max:12.3}, Total count    = {:12}]",
            h.len()
        )?;
        writeln!(
            out,
            "#[Unit    = milliseconds, values recorded in microseconds]"
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::readers::report::tests::report;

    #[test]
    fn the_distribution_ends_at_the_whole_count() {
        let report = report();
        let mut csv = Vec::new();
        report.distribution_csv(&mut csv).expect("writes");
        let csv = String::from_utf8(csv).expect("text");
        assert!(csv.starts_with("value_ms,percentile,total_count\n"));
        let last = csv.lines().last().expect("rows");
        assert!(last.ends_with(",100.000000,100"), "{last}");

        let mut hgrm = Vec::new();
        report.distribution_hgrm(&mut hgrm).expect("writes");
        let hgrm = String::from_utf8(hgrm).expect("text");
        assert!(hgrm.contains("1/(1-Percentile)") && hgrm.contains("#[Max"));
    }
}
