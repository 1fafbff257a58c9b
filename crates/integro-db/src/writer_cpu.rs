//! Where SQLite's threads run: one CPU for the committer and SQLite's
//! writer thread (ADR 0012), a lower priority for the checkpointer's
//! (ADR 0022).
//!
//! Every statement of a group commit is a hand-over between the committer's
//! thread and the thread sqlx runs the writer connection on, and back: the
//! two never run at the same time, they take turns many times a message.
//! On two CPUs they were woken across CPUs (an inter-processor interrupt, a
//! cold cache; costly under a hypervisor) and preempted by whatever else
//! ran there. Kept on one CPU, a hand-over is a switch on that CPU's own
//! run queue, and the scheduler moves the other threads away from it.
//!
//! A thread inherits the affinity of the thread that creates it, and sqlx
//! creates a SQLite connection's thread in the task that opens it: so the
//! writer connection is opened on a thread pinned to the chosen CPU, and
//! the committer pins itself to the same one. Nothing is pinned when the
//! process may run on one CPU only, or off Linux.
//!
//! The checkpointer's connection is opened the same way on a thread whose
//! nice value is raised: its thread inherits it, and the checkpoints, which
//! nobody waits for, give way to the commits and requests that are waited
//! for.

use std::future::Future;

/// The CPU to share: the last one the process may run on, if it may run on
/// two or more.
pub(crate) fn choose() -> Option<usize> {
    imp::choose()
}

/// Keeps the calling thread on `cpu` from now on (no-op for `None`).
pub(crate) fn pin_current_thread(cpu: Option<usize>) {
    if let Some(cpu) = cpu
        && let Err(e) = imp::pin_current_thread(cpu)
    {
        tracing::warn!(cpu, error = %e, "could not keep the SQLite writer on one CPU");
    }
}

/// Runs `open` to completion on a thread of its own pinned to `cpu`, so that
/// the threads it creates (a SQLite connection's) stay on that CPU.
pub(crate) async fn run_pinned<T, F>(cpu: Option<usize>, open: F) -> std::io::Result<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    run_on_own_thread(move || pin_current_thread(cpu), open).await
}

/// How much lower the checkpointer's CPU priority is (its nice value, added
/// to the process's). Its checkpoints keep up on what the others leave
/// (ADR 0022).
pub(crate) const CHECKPOINTER_NICENESS: i32 = 10;

/// Runs `open` to completion on a thread of its own whose CPU priority is
/// `niceness` lower, so that the threads it creates (a SQLite connection's)
/// run at that priority: on Linux a thread's nice value is its own and
/// passes to the threads it creates. Lowering one's priority needs no
/// privilege; should it fail anyway, the thread keeps the process's.
pub(crate) async fn run_niced<T, F>(niceness: i32, open: F) -> std::io::Result<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    run_on_own_thread(
        move || {
            if let Err(e) = imp::lower_current_thread_priority(niceness) {
                tracing::warn!(niceness, error = %e, "could not lower a SQLite connection's priority");
            }
        },
        open,
    )
    .await
}

/// Runs `prepare`, then `open` to completion, on a new thread.
async fn run_on_own_thread<T, F>(
    prepare: impl FnOnce() + Send + 'static,
    open: F,
) -> std::io::Result<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("integro-open".into())
        .spawn(move || {
            prepare();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let _ = done.send(runtime.map(|r| r.block_on(open)));
        })?;
    result
        .await
        .map_err(|_| std::io::Error::other("the thread opening a SQLite connection stopped"))?
}

#[cfg(target_os = "linux")]
mod imp {
    use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

    pub(super) fn choose() -> Option<usize> {
        let cpus = current_cpus().ok()?;
        (cpus.len() >= 2).then(|| cpus[cpus.len() - 1])
    }

    /// The CPUs the calling thread may run on.
    pub(super) fn current_cpus() -> std::io::Result<Vec<usize>> {
        let allowed = sched_getaffinity(None)?;
        Ok((0..CpuSet::MAX_CPU)
            .filter(|&i| allowed.is_set(i))
            .collect())
    }

    pub(super) fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
        let mut set = CpuSet::new();
        set.set(cpu);
        sched_setaffinity(None, &set)?;
        Ok(())
    }

    /// Raises the calling thread's nice value by `niceness` (at most to 19).
    /// `PRIO_PROCESS` with no pid names the calling thread on Linux.
    pub(super) fn lower_current_thread_priority(niceness: i32) -> std::io::Result<()> {
        let lowered = (current_thread_niceness()? + niceness).min(19);
        rustix::process::setpriority_process(None, lowered)?;
        Ok(())
    }

    /// The calling thread's nice value.
    pub(super) fn current_thread_niceness() -> std::io::Result<i32> {
        Ok(rustix::process::getpriority_process(None)?)
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub(super) fn choose() -> Option<usize> {
        None
    }

    pub(super) fn pin_current_thread(_cpu: usize) -> std::io::Result<()> {
        Ok(())
    }

    pub(super) fn lower_current_thread_priority(_niceness: i32) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// What the writer connection relies on: a thread created while opening
    /// it (as sqlx creates a SQLite connection's) runs on the chosen CPU
    /// only, and the caller's own thread is left as it was.
    #[tokio::test]
    async fn threads_created_while_opening_stay_on_the_cpu() {
        let before = super::imp::current_cpus().unwrap();
        let Some(cpu) = super::choose() else {
            eprintln!("one CPU allowed: nothing is pinned, nothing to check");
            return;
        };
        assert_eq!(Some(cpu), before.last().copied());
        let spawned = super::run_pinned(Some(cpu), async {
            std::thread::spawn(super::imp::current_cpus)
                .join()
                .unwrap()
                .unwrap()
        })
        .await
        .unwrap();
        assert_eq!(spawned, vec![cpu]);
        assert_eq!(super::imp::current_cpus().unwrap(), before);
    }

    /// What the checkpointer's connection relies on: a thread created while
    /// opening it runs with the lowered priority, and the caller's own
    /// thread keeps its own.
    #[tokio::test]
    async fn threads_created_while_opening_niced_run_at_the_lower_priority() {
        let before = super::imp::current_thread_niceness().unwrap();
        let spawned = super::run_niced(5, async {
            std::thread::spawn(super::imp::current_thread_niceness)
                .join()
                .unwrap()
                .unwrap()
        })
        .await
        .unwrap();
        assert_eq!(spawned, (before + 5).min(19));
        assert_eq!(super::imp::current_thread_niceness().unwrap(), before);
    }
}
