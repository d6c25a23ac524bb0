//! Ctrl-C and SIGTERM: the first asks the run to stop at the next step boundary (it writes a
//! checkpoint and the command exits naming it); a second one aborts at once.

use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Context, Result};
use dissect_train::StopSignal;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The first signal received (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// Installs the handler; the returned signal is raised by the first Ctrl-C or SIGTERM.
pub fn install() -> Result<StopSignal> {
    let stop = StopSignal::new();
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("installing the Ctrl-C handler")?;
    let raised = stop.clone();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if raised.is_requested() {
                eprintln!("\nsecond {}: aborting without a checkpoint", name(signal));
                std::process::exit(128 + signal);
            }
            RECEIVED.store(signal, Ordering::SeqCst);
            eprintln!(
                "\n{}: stopping after the current step and writing a checkpoint (press Ctrl-C again to abort at once)",
                name(signal)
            );
            raised.request();
        }
    });
    Ok(stop)
}

/// The conventional exit status after a signal-requested stop: 128 + the signal number.
pub fn exit_status() -> u8 {
    let signal = RECEIVED.load(Ordering::SeqCst);
    u8::try_from(128 + signal.max(SIGINT)).unwrap_or(130)
}

fn name(signal: i32) -> &'static str {
    if signal == SIGTERM { "SIGTERM" } else { "Ctrl-C" }
}
