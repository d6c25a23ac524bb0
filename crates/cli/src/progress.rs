//! What a training run shows on the terminal: a progress bar (unless hidden) and one line per
//! epoch, both on stderr, drawn from the trainer's observer callbacks.

use std::path::Path;

use dissect_select::{AUTO_WARMUP_SLOWDOWN, AutoWarmupEnd, Strategy};
use dissect_train::{CompareObserver, EpochSummary, Observer, RunOutcome, RunStart, StepLog};
use indicatif::{ProgressBar, ProgressStyle};

/// Draws a bar per run and prints epoch lines through it (so they do not tear it).
pub struct Progress {
    show_bar: bool,
    bar: ProgressBar,
    strategy: Option<Strategy>,
    /// `(finished, total)` strategies of a comparison.
    strategies: Option<(usize, usize)>,
}

impl Progress {
    /// Progress for one run, or for each of `strategies` runs of a comparison.
    pub fn new(show_bar: bool, strategies: Option<usize>) -> Self {
        Progress { show_bar, bar: ProgressBar::hidden(), strategy: None, strategies: strategies.map(|n| (0, n)) }
    }

    fn say(&self, line: String) {
        if self.bar.is_hidden() { eprintln!("{line}") } else { self.bar.println(line) }
    }
}

impl Observer for Progress {
    fn warning(&mut self, message: &str) {
        eprintln!("warning: {message}");
    }

    fn run_started(&mut self, start: &RunStart<'_>) {
        self.strategy = Some(start.strategy);
        if !self.show_bar {
            return;
        }
        self.bar = ProgressBar::new(start.total_steps);
        self.bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} steps, ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        self.bar.set_prefix(start.strategy.name().to_string());
        self.bar.set_position(start.step);
    }

    fn step_done(&mut self, step: &StepLog) {
        self.bar.set_position(step.step + 1);
        self.bar.set_message(format!(
            "epoch {} loss {:.3} kept {}/{} {:.0} samples/s",
            step.epoch,
            step.loss,
            step.selected,
            step.batch,
            step.batch as f64 / step.time.total().max(1e-9)
        ));
    }

    fn evaluating(&mut self, epoch: u32, pairs: usize) {
        self.bar.set_message(format!("epoch {epoch}: evaluating on {pairs} held-out pairs"));
    }

    fn epoch_done(&mut self, summary: &EpochSummary) {
        let load = &summary.load;
        if load.skipped() > 0 {
            self.say(format!(
                "epoch {}: skipped {} samples ({} corrupt images, {} missing images, {} empty captions, {} truncated members)",
                summary.epoch,
                load.skipped(),
                load.skipped_corrupt_image,
                load.skipped_missing_image,
                load.skipped_empty_caption,
                load.skipped_truncated
            ));
        }
        if let Some(end) = &summary.warmup_ended {
            self.say(auto_warmup_line(summary.epoch, end));
        }
        if let Some(eval) = &summary.eval {
            let r = &eval.retrieval;
            self.say(format!(
                "{} epoch {}: loss {:.3}, test R@1 TR {:.1} IR {:.1}{}{}",
                self.strategy.map_or("", Strategy::name),
                summary.epoch,
                summary.mean_loss,
                r.image_to_text.r1,
                r.text_to_image.r1,
                eval.zero_shot_top1().map_or(String::new(), |z| format!(", zero-shot {z:.1}"))
                    + &eval.zero_shot_folder.map_or(String::new(), |z| format!(", zero-shot folder {:.1}", z.top1)),
                summary
                    .noise
                    .and_then(|n| n.selected_noise_fraction)
                    .map_or(String::new(), |f| format!(", noisy among selected {:.1}%", 100.0 * f)),
            ));
        }
    }

    fn checkpoint_written(&mut self, _dir: &Path, _step: u64) {}

    fn run_ended(&mut self) {
        self.bar.finish_and_clear();
        self.bar = ProgressBar::hidden();
    }
}

impl CompareObserver for Progress {
    fn strategy_done(&mut self, outcome: &RunOutcome) {
        let Some((done, total)) = self.strategies.as_mut() else { return };
        *done += 1;
        eprintln!(
            "[{done}/{total}] {} finished: {:.0} s training{}",
            outcome.strategy,
            outcome.train_time_s,
            outcome.final_eval().map_or(String::new(), |e| format!(", test mean R@1 {:.1}", e.mean_r1()))
        );
    }
}

/// Why an `auto` warm-up ended after `epoch`, in words.
fn auto_warmup_line(epoch: u32, end: &AutoWarmupEnd) -> String {
    let why = if end.capped {
        "half the run is over".to_string()
    } else if end.rise <= 0.0 {
        format!("the mean CLIPScore did not rise in epoch {epoch} ({:+.2})", end.rise)
    } else {
        format!(
            "the mean CLIPScore rose {:.2} in epoch {epoch}, at most {:.0}% of its steepest rise ({:.2})",
            end.rise,
            100.0 * AUTO_WARMUP_SLOWDOWN,
            end.steepest_rise
        )
    };
    format!("auto warm-up: selection starts at epoch {}: {why}", end.first_selecting_epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_warmup_lines_say_why() {
        let end = |rise, steepest_rise, capped| AutoWarmupEnd { first_selecting_epoch: 3, rise, steepest_rise, capped };
        let slowed = auto_warmup_line(2, &end(3.0, 10.0, false));
        assert_eq!(
            slowed,
            "auto warm-up: selection starts at epoch 3: the mean CLIPScore rose 3.00 in epoch 2, at most 50% of \
             its steepest rise (10.00)"
        );
        assert!(auto_warmup_line(2, &end(-0.3, -0.3, false)).ends_with("did not rise in epoch 2 (-0.30)"));
        assert!(auto_warmup_line(2, &end(7.5, 12.7, true)).ends_with("half the run is over"));
    }
}
