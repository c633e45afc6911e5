//! Runs the stages a build needs on a small pool of threads: a stage starts once every stage it depends
//! on has finished, at most `jobs` run at a time, and the first failure cancels the rest.
//!
//! Hand-written (a mutex, a condvar and `std::thread::scope`) because a DAG of a few stages does not
//! justify a thread-pool crate, and stage order must follow `Plan::order` exactly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

/// How many stages may build at once: the number of cores (RUN steps are CPU-bound as often as not).
pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

struct State<E> {
    /// Indexed like `order`: whether that stage was handed to a worker.
    started: Vec<bool>,
    /// Indexed by stage index: whether that stage finished successfully.
    done: Vec<bool>,
    running: usize,
    error: Option<E>,
}

/// Builds every stage of `order` (dependencies first, as `Plan::order` lists them). `deps(i)` names the
/// stages stage `i` needs. On the first error `cancel` is set (running stages stop at their next step and
/// their containers are killed), no further stage starts, and that error is returned; if `cancel` was
/// already set when a stage failed (Ctrl-C), `interrupted()` is returned instead, since the failure was
/// caused by the interruption.
pub fn run<E: Send>(
    order: &[usize],
    deps: &(dyn Fn(usize) -> Vec<usize> + Sync),
    jobs: usize,
    cancel: &AtomicBool,
    interrupted: &(dyn Fn() -> E + Sync),
    stage: &(dyn Fn(usize) -> Result<(), E> + Sync),
) -> Result<(), E> {
    let size = order.iter().copied().max().map_or(0, |m| m + 1);
    let state = Mutex::new(State {
        started: vec![false; order.len()],
        done: vec![false; size],
        running: 0,
        error: None,
    });
    let wake = Condvar::new();
    let workers = jobs.clamp(1, order.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| worker(order, deps, cancel, interrupted, stage, &state, &wake));
        }
    });
    let state = state.into_inner().unwrap_or_else(|p| p.into_inner());
    match state.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn lock<E>(m: &Mutex<State<E>>) -> MutexGuard<'_, State<E>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn worker<E>(
    order: &[usize],
    deps: &(dyn Fn(usize) -> Vec<usize> + Sync),
    cancel: &AtomicBool,
    interrupted: &(dyn Fn() -> E + Sync),
    stage: &(dyn Fn(usize) -> Result<(), E> + Sync),
    state: &Mutex<State<E>>,
    wake: &Condvar,
) {
    let mut g = lock(state);
    loop {
        if g.error.is_some() || cancel.load(Ordering::SeqCst) {
            break;
        }
        // The first stage in plan order whose dependencies are all built.
        let ready = (0..order.len()).find(|&p| {
            !g.started[p]
                && deps(order[p])
                    .iter()
                    .all(|&d| g.done.get(d).copied().unwrap_or(false))
        });
        match ready {
            Some(p) => {
                g.started[p] = true;
                g.running += 1;
                drop(g);
                let result = stage(order[p]);
                g = lock(state);
                g.running -= 1;
                match result {
                    Ok(()) => g.done[order[p]] = true,
                    Err(e) => {
                        if g.error.is_none() {
                            let was_cancelled = cancel.swap(true, Ordering::SeqCst);
                            g.error = Some(if was_cancelled { interrupted() } else { e });
                        }
                    }
                }
                wake.notify_all();
            }
            // Nothing ready and nothing running: every stage has been handed out.
            None if g.running == 0 => break,
            None => g = wake.wait(g).unwrap_or_else(|p| p.into_inner()),
        }
    }
    wake.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// Stage 0 and 1 are independent, 2 needs both, 3 needs 2.
    fn deps(i: usize) -> Vec<usize> {
        match i {
            2 => vec![0, 1],
            3 => vec![2],
            _ => vec![],
        }
    }

    #[test]
    fn dependencies_first_and_independent_stages_overlap() {
        let log = Mutex::new(Vec::new());
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let cancel = AtomicBool::new(false);
        run::<String>(&[0, 1, 2, 3], &deps, 2, &cancel, &|| "int".into(), &|i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            log.lock().unwrap().push(format!("start {i}"));
            // Stages 0 and 1 each wait (bounded) for the other to start: they only both finish
            // quickly when they run at the same time.
            if i < 2 {
                for _ in 0..200 {
                    if running.load(Ordering::SeqCst) == 2 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            log.lock().unwrap().push(format!("end {i}"));
            running.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
        let log = log.into_inner().unwrap();
        let pos = |s: &str| log.iter().position(|l| l == s).unwrap();
        assert_eq!(peak.load(Ordering::SeqCst), 2, "{log:?}");
        assert!(pos("end 0") < pos("start 2") && pos("end 1") < pos("start 2"));
        assert!(pos("end 2") < pos("start 3"));
    }

    #[test]
    fn one_job_runs_in_plan_order() {
        let log = Mutex::new(Vec::new());
        let cancel = AtomicBool::new(false);
        run::<String>(&[1, 0, 2, 3], &deps, 1, &cancel, &|| "int".into(), &|i| {
            log.lock().unwrap().push(i);
            Ok(())
        })
        .unwrap();
        assert_eq!(log.into_inner().unwrap(), vec![1, 0, 2, 3]);
    }

    #[test]
    fn a_failure_cancels_and_stops_dependents() {
        let started = Mutex::new(Vec::new());
        let cancel = AtomicBool::new(false);
        let r = run::<String>(&[0, 1, 2, 3], &deps, 2, &cancel, &|| "int".into(), &|i| {
            started.lock().unwrap().push(i);
            match i {
                0 => Err("stage 0 broke".into()),
                // Stage 1 runs until the failure cancels it, as a RUN step would.
                _ => {
                    while !cancel.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err("int".into())
                }
            }
        });
        assert_eq!(r, Err("stage 0 broke".to_string()));
        assert!(cancel.load(Ordering::SeqCst));
        let started = started.into_inner().unwrap();
        assert!(
            !started.contains(&2) && !started.contains(&3),
            "{started:?}"
        );
    }

    #[test]
    fn failure_after_an_external_cancel_reports_the_interruption() {
        let cancel = AtomicBool::new(false);
        let r = run::<String>(&[0], &deps, 2, &cancel, &|| "interrupted".into(), &|_| {
            cancel.store(true, Ordering::SeqCst);
            Err("exit code 130".into())
        });
        assert_eq!(r, Err("interrupted".to_string()));
    }
}
