//! The `integro` child process: its CLI for setup, `integro serve`, its
//! memory and CPU time from `/proc`, and a clean stop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// How to run the binary: its path and environment.
pub struct Integro {
    pub binary: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Integro {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.binary);
        // Settings of the caller's (a config file, INTEGRO_WORKERS=0 left by
        // an ingest benchmark) must not change the run: only ours reach it.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("INTEGRO_") {
                c.env_remove(key);
            }
        }
        c.args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    /// `integro --json ARGS…`, answered as JSON.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<Value> {
        let out = self
            .command(&[&["--json"], args].concat())
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", self.binary.display()))?;
        if !out.status.success() {
            bail!(
                "integro {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("integro {} answered no JSON", args.join(" ")))
    }

    /// `integro migrate`: creates the database the CLI's commands then use
    /// (they never create one themselves).
    pub fn migrate(&self) -> anyhow::Result<()> {
        let out = self
            .command(&["migrate"])
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", self.binary.display()))?;
        if !out.status.success() {
            bail!(
                "integro migrate failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// `integro serve`, its output appended to `log`.
    pub fn serve(&self, log: &Path) -> anyhow::Result<Server> {
        self.spawn("serve", log, &[])
    }

    /// `integro WHAT` (`serve`, `worker`) with `env` added, its output
    /// appended to `log`.
    pub fn spawn(&self, what: &str, log: &Path, env: &[(&str, String)]) -> anyhow::Result<Server> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = self
            .command(&[what])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} {what}", self.binary.display()))?;
        Ok(Server { child })
    }
}

pub struct Server {
    child: Child,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for `/readyz`; fails early when the process exits.
    pub async fn wait_ready(&mut self, client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("integro serve exited ({status}) before it was ready");
            }
            if let Ok(r) = client.get(format!("{base}/readyz")).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("integro serve was not ready within 60 s")
    }

    /// SIGTERM (a graceful shutdown), then SIGKILL after 10 s.
    pub async fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("integro serve did not stop within 10 s of SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    /// A run that ends early on an error must not leave the server running.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A `VmXXX:  1234 kB` line of `/proc/PID/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Resident memory now (KiB).
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

/// Peak resident memory since the process started (KiB).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM")
}

/// User plus system CPU time so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(ticks_of(&stat, false)? as f64 / ticks_per_second())
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system; no memory is involved.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    per_second.max(1) as f64
}

/// A `/proc/PID/stat` line's user and system ticks (fields 14 and 15),
/// and with `children` those of its children it has waited for (16, 17).
fn ticks_of(stat: &str, children: bool) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces:
    // count from after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let take = if children { 4 } else { 2 };
    fields
        .get(11..11 + take)?
        .iter()
        .map(|f| f.parse::<u64>().ok())
        .sum()
}

/// The CPU time of every PostgreSQL process on this machine so far, in
/// seconds: each one's own, and the postmaster's for the backends that
/// ended (it waits for them). Its backends serve Integro alone during a
/// benchmark.
pub fn postgres_cpu_seconds() -> Option<f64> {
    let mut ticks = 0;
    let mut found = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if stat.contains("(postgres)") {
            found = true;
            ticks += ticks_of(&stat, true).unwrap_or(0);
        }
    }
    found.then(|| ticks as f64 / ticks_per_second())
}

/// The whole machine's CPU time since boot by what it went to, in ticks
/// (`/proc/stat`, its `cpu` line). On a virtual machine `steal` is time the
/// host gave to someone else: a run with much of it measured a smaller
/// machine than `nproc` says.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MachineCpu {
    pub busy: u64,
    pub idle: u64,
    pub iowait: u64,
    pub steal: u64,
}

/// Shares of the machine's CPU time over a stretch, in percent.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct MachineShares {
    pub busy_pct: f64,
    pub idle_pct: f64,
    pub iowait_pct: f64,
    pub steal_pct: f64,
}

impl MachineCpu {
    pub fn now() -> Option<MachineCpu> {
        MachineCpu::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    fn parse(stat: &str) -> Option<MachineCpu> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        // user nice system idle iowait irq softirq steal (guest time is
        // counted in user already).
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        Some(MachineCpu {
            busy: at(0) + at(1) + at(2) + at(5) + at(6),
            idle: at(3),
            iowait: at(4),
            steal: at(7),
        })
    }

    /// The ticks that passed from `earlier` to `self`, by what they went to.
    pub fn spent_since(&self, earlier: &MachineCpu) -> MachineCpu {
        MachineCpu {
            busy: self.busy.saturating_sub(earlier.busy),
            idle: self.idle.saturating_sub(earlier.idle),
            iowait: self.iowait.saturating_sub(earlier.iowait),
            steal: self.steal.saturating_sub(earlier.steal),
        }
    }

    /// Ticks spent (from `spent_since`) as shares; `None` when no tick passed.
    pub fn shares(&self) -> Option<MachineShares> {
        let total = (self.busy + self.idle + self.iowait + self.steal) as f64;
        let pct = |ticks: u64| 100.0 * ticks as f64 / total;
        (total > 0.0).then(|| MachineShares {
            busy_pct: pct(self.busy),
            idle_pct: pct(self.idle),
            iowait_pct: pct(self.iowait),
            steal_pct: pct(self.steal),
        })
    }

    /// What the time from `self` to `later` went to; `None` when no tick passed.
    pub fn shares_until(&self, later: &MachineCpu) -> Option<MachineShares> {
        later.spent_since(self).shares()
    }
}

impl std::ops::AddAssign for MachineCpu {
    fn add_assign(&mut self, other: MachineCpu) {
        self.busy += other.busy;
        self.idle += other.idle;
        self.iowait += other.iowait;
        self.steal += other.steal;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_s_ticks_are_read_after_its_name() {
        let stat = "42 (post gres) S 1 2 3 4 5 6 7 8 9 10 100 20 7 3 20 0 1 0";
        assert_eq!(ticks_of(stat, false), Some(120));
        assert_eq!(ticks_of(stat, true), Some(130));
        assert_eq!(ticks_of("42 (x) S 1", false), None);
    }

    #[test]
    fn reads_our_own_memory_and_cpu() {
        let me = std::process::id();
        let (rss, peak) = (rss_kib(me).unwrap(), peak_rss_kib(me).unwrap());
        assert!(rss > 0 && peak >= rss, "rss {rss} peak {peak}");
        assert!(cpu_seconds(me).unwrap() >= 0.0);
    }

    #[test]
    fn the_machine_s_cpu_time_is_split_by_what_it_went_to() {
        let before = MachineCpu::parse("cpu  100 0 50 800 10 0 5 20 0 0\ncpu0 1 2 3\n").unwrap();
        let after = MachineCpu::parse("cpu  160 0 75 860 20 0 5 60 0 0\n").unwrap();
        assert_eq!(before.busy, 155);
        let s = before.shares_until(&after).unwrap();
        // 85 busy, 60 idle, 10 iowait, 40 steal of 195 ticks.
        assert!((s.steal_pct - 100.0 * 40.0 / 195.0).abs() < 1e-9);
        assert!((s.busy_pct + s.idle_pct + s.iowait_pct + s.steal_pct - 100.0).abs() < 1e-9);
        assert!(before.shares_until(&before).is_none());
        assert!(MachineCpu::now().is_some());
    }
}
