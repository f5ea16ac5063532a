//! The standard `process_*` metrics (the names every Prometheus client library exposes), read from
//! `/proc/self` when `/metrics` is scraped. Linux only: elsewhere nothing is exposed.
//!
//! Each value is read on its own and a value that cannot be read or parsed is left out of that
//! scrape, never reported as zero: a dashboard then shows a gap, not a false reading.

use std::fmt;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};

/// What one scrape found; `None` where a read or parse failed.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct ProcessStats {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size, in bytes.
    pub resident_bytes: Option<u64>,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: Option<u64>,
    /// When the process started, in Unix seconds.
    pub start_time_seconds: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors (`None` as well when unlimited).
    pub max_fds: Option<u64>,
    /// OS threads.
    pub threads: Option<u64>,
}

/// The fields of `/proc/self/stat` the metrics use, in the kernel's units.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stat {
    /// `utime` + `stime`, in clock ticks.
    pub cpu_ticks: Option<u64>,
    /// `num_threads`.
    pub threads: Option<u64>,
    /// `starttime`: clock ticks after boot.
    pub start_ticks: Option<u64>,
    /// `vsize`, in bytes.
    pub vsize: Option<u64>,
    /// `rss`, in pages.
    pub rss_pages: Option<u64>,
}

/// Parses the text of `/proc/PID/stat` (proc(5)). The command name (field 2) is in parentheses
/// and may itself contain spaces and `)`: the fields are counted from the last `)`.
pub(super) fn parse_stat(text: &str) -> Stat {
    let Some(rest) = text.rfind(')').and_then(|i| text.get(i + 1..)) else {
        return Stat::default();
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field numbers as proc(5) gives them (1-based); the first after `)` is field 3.
    let field = |n: usize| -> Option<u64> { fields.get(n.checked_sub(3)?)?.parse().ok() };
    let (utime, stime) = (field(14), field(15));
    Stat {
        cpu_ticks: utime.zip(stime).and_then(|(u, s)| u.checked_add(s)),
        threads: field(20),
        start_ticks: field(22),
        vsize: field(23),
        rss_pages: field(24),
    }
}

/// The boot time (`btime`, Unix seconds) from the text of `/proc/stat`.
pub(super) fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Turns the kernel's units into the metrics' (ticks per second and page size as the system
/// says; a zero for either leaves the values that need it out).
pub(super) fn stats_from(
    stat: Stat,
    boot_time: Option<u64>,
    ticks_per_second: u64,
    page_size: u64,
) -> ProcessStats {
    let ticks = (ticks_per_second > 0).then_some(ticks_per_second as f64);
    ProcessStats {
        cpu_seconds: stat.cpu_ticks.zip(ticks).map(|(t, hz)| t as f64 / hz),
        resident_bytes: stat
            .rss_pages
            .filter(|_| page_size > 0)
            .and_then(|p| p.checked_mul(page_size)),
        virtual_bytes: stat.vsize,
        start_time_seconds: stat
            .start_ticks
            .zip(ticks)
            .zip(boot_time)
            .map(|((t, hz), boot)| boot as f64 + t as f64 / hz),
        open_fds: None,
        max_fds: None,
        threads: stat.threads,
    }
}

/// Reads this process's figures now.
#[cfg(target_os = "linux")]
pub(super) fn read() -> ProcessStats {
    let stat = std::fs::read_to_string("/proc/self/stat")
        .map(|t| parse_stat(&t))
        .unwrap_or_default();
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|t| parse_boot_time(&t));
    let page_size = u64::try_from(rustix::param::page_size()).unwrap_or(0);
    let mut stats = stats_from(
        stat,
        boot_time,
        rustix::param::clock_ticks_per_second(),
        page_size,
    );
    // The listing's own descriptor is among those counted, as in other clients.
    stats.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.filter(Result::is_ok).count() as u64);
    stats.max_fds = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    stats
}

/// Not Linux: nothing is read, and nothing is exposed.
#[cfg(not(target_os = "linux"))]
pub(super) fn read() -> ProcessStats {
    ProcessStats::default()
}

/// Exposes [`read`]'s figures under their standard names, without the `portcullis_` prefix.
#[derive(Debug)]
pub(super) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let s = read();
        if let Some(v) = s.cpu_seconds {
            let m = ConstCounter::new(v);
            m.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                m.metric_type(),
            )?)?;
        }
        let gauges: [(&str, &str, Option<u64>); 5] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes (plugin libraries are mapped once and never unmapped)",
                s.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                s.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                s.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors (the soft limit)",
                s.max_fds,
            ),
            ("process_threads", "Number of OS threads in the process", s.threads),
        ];
        for (name, help, value) in gauges {
            let Some(v) = value else { continue };
            let m = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
            m.encode(encoder.encode_descriptor(name, help, None, m.metric_type())?)?;
        }
        if let Some(v) = s.start_time_seconds {
            let m = ConstGauge::new(v);
            m.encode(encoder.encode_descriptor(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                None,
                m.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real line's shape, with a command name holding spaces and a `)`.
    const STAT: &str = "4242 (port cullis) x) S 1 4242 4242 0 -1 4194560 2837 0 12 0 \
        250 75 0 0 20 0 9 0 123456 912345678 4321 18446744073709551615 1 1 0 0 0 0 0 4096 17610 \
        0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let s = parse_stat(STAT);
        assert_eq!(s.cpu_ticks, Some(325));
        assert_eq!(s.threads, Some(9));
        assert_eq!(s.start_ticks, Some(123_456));
        assert_eq!(s.vsize, Some(912_345_678));
        assert_eq!(s.rss_pages, Some(4321));
    }

    #[test]
    fn units_are_converted_and_what_cannot_be_read_is_left_out() {
        let s = stats_from(parse_stat(STAT), Some(1_700_000_000), 100, 4096);
        assert_eq!(s.cpu_seconds, Some(3.25));
        assert_eq!(s.resident_bytes, Some(4321 * 4096));
        assert_eq!(s.virtual_bytes, Some(912_345_678));
        assert_eq!(s.start_time_seconds, Some(1_700_000_000.0 + 1234.56));
        // No boot time, no clock rate, no page size: those values are absent, not zero.
        let s = stats_from(parse_stat(STAT), None, 0, 0);
        assert_eq!(
            (s.cpu_seconds, s.resident_bytes, s.start_time_seconds),
            (None, None, None)
        );
        assert_eq!(s.virtual_bytes, Some(912_345_678));
    }

    #[test]
    fn garbage_gives_nothing_and_never_panics() {
        for text in [
            "",
            "no parenthesis",
            "1 (x)",
            "1 (x) S a b c",
            ")",
            "1 (x) S ∞",
        ] {
            let s = stats_from(parse_stat(text), parse_boot_time(text), 100, 4096);
            assert_eq!(s, ProcessStats::default(), "{text:?}");
        }
        assert_eq!(
            parse_boot_time("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_boot_time("btime soon\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_memory_time_and_descriptors() {
        let s = read();
        assert!(s.resident_bytes.is_some_and(|b| b > 0), "{s:?}");
        assert!(s.virtual_bytes.is_some_and(|b| b > 0), "{s:?}");
        assert!(s.cpu_seconds.is_some(), "{s:?}");
        assert!(s.open_fds.is_some_and(|n| n > 0), "{s:?}");
        assert!(s.threads.is_some_and(|n| n > 0), "{s:?}");
        assert!(s.start_time_seconds.is_some_and(|t| t > 1.0e9), "{s:?}");
    }
}
