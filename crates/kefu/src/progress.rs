//! Command-line progress output shared by `kefu model pull` and `kefu kb import`.

/// A line above the progress bar, or plainly when there is no terminal to draw the bar on (indicatif drops
/// `println` on a hidden bar, which would lose the report when output is piped or logged).
pub fn say(bar: &indicatif::ProgressBar, line: String) {
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}
