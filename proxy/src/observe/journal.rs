//! Log lines for the journal. When stderr is the journal's stream (systemd sets JOURNAL_STREAM
//! to its device and inode), each line starts with its syslog priority (`<3>` for an error),
//! which journald stores as the entry's priority (`journalctl -p err` then finds idgate's
//! errors), and carries no timestamp of its own (the journal stamps every entry).
use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::{format::Writer, FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Whether stderr is the stream systemd connected to the journal.
pub fn stderr_is_journal() -> bool {
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM").ok().and_then(|v| {
        let (d, i) = v.split_once(':')?;
        Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?))
    }) else {
        return false;
    };
    use std::os::unix::fs::MetadataExt;
    let stderr = std::os::fd::AsFd::as_fd(&std::io::stderr()).try_clone_to_owned().ok().map(std::fs::File::from);
    stderr.and_then(|f| f.metadata().ok()).is_some_and(|m| m.dev() == dev && m.ino() == ino)
}

/// syslog(3) priority of a level.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Formats events with `inner`, prefixed with their priority.
pub struct WithPriority<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for WithPriority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}
