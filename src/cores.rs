//! Which cores the writer and the HTTP workers run on. The booking store's writer is one thread
//! that every durable answer waits for; when it shares a core with HTTP workers, each of its
//! transactions waits for the scheduler as well. On a machine with more than two cores the
//! writer has the last one to itself and the HTTP workers (one fewer than the cores, unless
//! `WORKERS` says otherwise) the others. On two cores or fewer nothing is pinned: a core of its
//! own would leave one for all the rest.

/// Cores the scheduler lets this process use.
pub fn available() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The core the writer runs on alone, if the machine has cores enough to spare one.
pub fn writer_core() -> Option<usize> {
    let n = available();
    (n > 2).then(|| n - 1)
}

/// HTTP workers for a `WORKERS` setting (0: as many as the cores left to them).
pub fn http_workers(configured: usize) -> usize {
    match (configured, writer_core()) {
        (0, Some(w)) => w,
        (0, None) => available(),
        (n, _) => n,
    }
}

/// Cores an HTTP worker may run on: all but the writer's.
pub fn http_cores() -> Option<std::ops::Range<usize>> {
    writer_core().map(|w| 0..w)
}

/// Keeps the calling thread on `cores` (indices among the cores this process may use);
/// `false` if the system refused, which changes nothing but where the thread runs.
pub fn pin_current_thread(cores: std::ops::Range<usize>) -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: the set is a plain bit mask that sched_getaffinity fills and the CPU_*
        // macros read and write in place; pid 0 is the calling thread.
        unsafe {
            let mut allowed: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) != 0
            {
                return false;
            }
            // The process may be limited to some of the machine's cores (taskset, cgroups):
            // count among those.
            let usable: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
                .filter(|c| libc::CPU_ISSET(*c, &allowed))
                .collect();
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            let mut any = false;
            for i in cores {
                if let Some(c) = usable.get(i) {
                    libc::CPU_SET(*c, &mut set);
                    any = true;
                }
            }
            any && libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = cores;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_leave_the_writer_its_core() {
        let n = available();
        if n > 2 {
            assert_eq!(http_workers(0), n - 1);
            assert_eq!(http_cores(), Some(0..n - 1));
        } else {
            assert_eq!(http_workers(0), n);
            assert_eq!(http_cores(), None);
        }
        assert_eq!(http_workers(3), 3);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_can_be_pinned() {
        let pinned = std::thread::spawn(|| pin_current_thread(0..1))
            .join()
            .unwrap();
        assert!(pinned);
        // Outside the usable cores nothing is pinned.
        let none = std::thread::spawn(|| pin_current_thread(100_000..100_001))
            .join()
            .unwrap();
        assert!(!none);
    }
}
