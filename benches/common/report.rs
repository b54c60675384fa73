//! What the hand-run benches print: Markdown table rows and nearest-rank summaries.

/// Prints one Markdown table row.
#[macro_export]
macro_rules! row {
    ($($x:expr),* $(,)?) => { println!("|{}", [$(format!(" {} |", $x)),*].concat()) };
}

/// One decimal, or "-" for no value.
pub fn f1(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.1}")
    } else {
        "-".into()
    }
}

/// (n, p50, p99, max, mean) of the finite values, nearest-rank percentiles.
pub fn summary(v: impl IntoIterator<Item = f64>) -> (usize, f64, f64, f64, f64) {
    let mut v: Vec<f64> = v.into_iter().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let pct = |p: f64| v.get(((p * n as f64).ceil() as usize).max(1) - 1).copied();
    let mean = v.iter().sum::<f64>() / n as f64;
    let [p50, p99, max] = [0.5, 0.99, 1.0].map(|p| pct(p).unwrap_or(f64::NAN));
    (n, p50, p99, max, mean)
}
