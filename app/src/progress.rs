//! Progress of long commands (`courier run … --until-caught-up`, `courier
//! rebuild`): records applied, rate, records left and an ETA, read from the
//! runner's own metrics (`courier_processor_events_total`,
//! `courier_processor_lag_records`) so what the operator sees is what Prometheus
//! sees. On a terminal an indicatif bar; otherwise one line on stderr every few
//! seconds, which logs keep.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use prometheus::core::Collector;

/// How often the bar is redrawn.
const TICK: Duration = Duration::from_millis(250);
/// How often a line is written when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// Records applied and records behind for one metrics label, summed over
/// partitions.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snapshot {
    /// Records applied and acknowledged since the process started.
    pub done: u64,
    /// Records between the positions and the ends of the partitions held.
    pub left: u64,
}

/// Reads `processor`'s figures from the process's metrics.
pub fn snapshot(processor: &str) -> Snapshot {
    let m = courier_pipeline::metrics::metrics();
    let sum = |families: Vec<prometheus::proto::MetricFamily>, counter: bool| -> f64 {
        families
            .iter()
            .flat_map(|f| f.get_metric())
            .filter(|metric| {
                metric
                    .get_label()
                    .iter()
                    .any(|l| l.name() == "processor" && l.value() == processor)
            })
            .map(|metric| {
                if counter {
                    metric.get_counter().get_value()
                } else {
                    metric.get_gauge().get_value()
                }
            })
            .sum()
    };
    Snapshot {
        done: sum(m.events.collect(), true) as u64,
        left: sum(m.lag.collect(), false).max(0.0) as u64,
    }
}

/// One line of progress: `inbox-rebuild: 120000 records, 65000/s, 30000 left, ETA 0:00:01`.
pub fn line(processor: &str, now: Snapshot, per_s: f64) -> String {
    let eta = if per_s > 0.0 && now.left > 0 {
        let s = (now.left as f64 / per_s).ceil() as u64;
        format!(", ETA {}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        String::new()
    };
    format!(
        "{processor}: {} records, {per_s:.0}/s, {} left{eta}",
        now.done, now.left
    )
}

/// Shows the progress of the processor labelled `processor` until dropped, then
/// a last line with the totals.
pub struct Progress {
    task: tokio::task::JoinHandle<()>,
    processor: String,
    started: Instant,
    first: Snapshot,
}

impl Progress {
    /// Starts showing; a bar on a terminal, lines otherwise.
    pub fn start(processor: String) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let (started, first) = (Instant::now(), snapshot(&processor));
        let label = processor.clone();
        let task = tokio::spawn(async move {
            let processor = label;
            let bar = terminal.then(|| {
                let b = indicatif::ProgressBar::new(0);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{prefix} {bar:40} {pos}/{len} records {msg}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                b.set_prefix(processor.clone());
                b
            });
            let mut last_line = Instant::now();
            let mut tick = tokio::time::interval(TICK);
            loop {
                tick.tick().await;
                let now = snapshot(&processor);
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                let per_s = now.done.saturating_sub(first.done) as f64 / secs;
                match &bar {
                    Some(b) => {
                        b.set_length(now.done + now.left);
                        b.set_position(now.done);
                        let full = line(&processor, now, per_s);
                        // The bar shows done/total; the message the rest.
                        let rest = full.split_once(" records, ").map_or("", |(_, r)| r);
                        b.set_message(rest.to_string());
                    }
                    None if last_line.elapsed() >= LINE_EVERY => {
                        eprintln!("{}", line(&processor, now, per_s));
                        last_line = Instant::now();
                    }
                    None => {}
                }
            }
        });
        Progress {
            task,
            processor,
            started,
            first,
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.task.abort();
        let now = snapshot(&self.processor);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let per_s = now.done.saturating_sub(self.first.done) as f64 / secs;
        eprintln!("{}", line(&self.processor, now, per_s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_done_rate_left_and_eta() {
        let s = Snapshot {
            done: 120_000,
            left: 130_000,
        };
        assert_eq!(
            line("inbox-rebuild", s, 65_000.0),
            "inbox-rebuild: 120000 records, 65000/s, 130000 left, ETA 0:00:02"
        );
        assert_eq!(
            line("inbox", Snapshot { done: 5, left: 0 }, 0.0),
            "inbox: 5 records, 0/s, 0 left"
        );
    }

    #[test]
    fn a_snapshot_reads_the_runners_metrics_for_its_processor_only() {
        let m = courier_pipeline::metrics::metrics();
        m.events
            .with_label_values(&["progress-test", "t", "0"])
            .inc_by(7);
        m.events
            .with_label_values(&["progress-test", "t", "1"])
            .inc_by(3);
        m.events.with_label_values(&["other", "t", "0"]).inc_by(100);
        m.lag
            .with_label_values(&["progress-test", "t", "0"])
            .set(40);
        m.lag.with_label_values(&["progress-test", "t", "1"]).set(2);
        assert_eq!(snapshot("progress-test"), Snapshot { done: 10, left: 42 });
    }
}
