//! The namespace controller's work queue and the workers that drain it.
//!
//! Each namespace is in the queue at most once, by its shared name, whatever asked for it (its
//! own event, a ServiceAccount's, a copy's, a credential-wide change) and however often; it is
//! never reconciled twice at once, and one asked for while it runs goes back in when it ends. A
//! converged namespace has nothing in the queue and no timer: failures alone are retried on a
//! timer of their own, and one resync timer for the whole cluster is the safety net. Every
//! reconcile is told how long its namespace waited, from the first request since its last run.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::cache::Name;

/// A namespace taken from the queue to be reconciled.
#[derive(Debug)]
pub(crate) struct Taken {
    pub(crate) name: Name,
    /// When it was first asked for since its last reconcile began.
    pub(crate) asked_at: Instant,
}

#[derive(Default)]
struct State {
    /// Queued names in the order they were first asked for.
    order: VecDeque<Name>,
    /// The queued names, with when each was first asked for.
    queued: HashMap<Name, Instant>,
    /// Names being reconciled, with when each was asked for again meanwhile.
    running: HashMap<Name, Option<Instant>>,
    /// Retries of failed namespaces, by when they are due; each name at most once.
    retries: BTreeSet<(Instant, Name)>,
    retry_of: HashMap<Name, Instant>,
    closed: bool,
}

impl State {
    fn ask(&mut self, name: Name, at: Instant) -> bool {
        if let Some(again) = self.running.get_mut(&name) {
            again.get_or_insert(at);
            return false;
        }
        if self.queued.contains_key(&name) {
            return false;
        }
        self.queued.insert(name.clone(), at);
        self.order.push_back(name);
        true
    }

    fn cancel_retry(&mut self, name: &Name) {
        if let Some(due) = self.retry_of.remove(name) {
            self.retries.remove(&(due, name.clone()));
        }
    }
}

/// The queue of namespaces to reconcile.
#[derive(Default)]
pub(crate) struct WorkQueue {
    state: Mutex<State>,
    /// Something was queued, or the queue closed.
    queued: Notify,
    /// A retry was scheduled: the retry timer may have to wake sooner.
    retry_scheduled: Notify,
}

impl WorkQueue {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("work queue lock")
    }

    /// Asks for a reconcile of `name`.
    pub(crate) fn ask(&self, name: Name) {
        self.ask_all([name]);
    }

    /// Asks for a reconcile of every one of `names`.
    pub(crate) fn ask_all(&self, names: impl IntoIterator<Item = Name>) {
        let now = Instant::now();
        let mut state = self.state();
        let added = names.into_iter().filter(|name| state.ask(name.clone(), now)).count();
        drop(state);
        self.wake(added);
    }

    /// Wakes workers for `added` newly queued namespaces: one for one, every idle one for more.
    fn wake(&self, added: usize) {
        match added {
            0 => {}
            1 => self.queued.notify_one(),
            _ => self.queued.notify_waiters(),
        }
    }

    /// The next namespace to reconcile; `None` once the queue is closed.
    async fn take(&self) -> Option<Taken> {
        loop {
            let notified = self.queued.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.state();
                if state.closed {
                    return None;
                }
                if let Some(name) = state.order.pop_front() {
                    let asked_at = state.queued.remove(&name).expect("a queued name has its time");
                    state.running.insert(name.clone(), None);
                    return Some(Taken { name, asked_at });
                }
            }
            notified.await;
        }
    }

    /// Ends the reconcile of `name`: retried after `retry` (a failure), else its retry is
    /// dropped; back in the queue if asked for while it ran.
    fn finish(&self, name: &Name, retry: Option<Duration>) {
        let mut state = self.state();
        state.cancel_retry(name);
        if let Some(after) = retry {
            let due = Instant::now() + after;
            state.retries.insert((due, name.clone()));
            state.retry_of.insert(name.clone(), due);
        }
        let again = state.running.remove(name).flatten();
        let requeued = again.is_some_and(|at| state.ask(name.clone(), at));
        drop(state);
        if retry.is_some() {
            self.retry_scheduled.notify_one();
        }
        if requeued {
            self.queued.notify_one();
        }
    }

    /// Stops handing out namespaces: workers end once their reconcile in flight does.
    pub(crate) fn close(&self) {
        self.state().closed = true;
        self.queued.notify_waiters();
    }

    /// Queues the retries that are due; returns when the next one is.
    fn queue_due_retries(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut state = self.state();
        let mut due = Vec::new();
        while let Some((at, _)) = state.retries.first().filter(|(at, _)| *at <= now) {
            let at = *at;
            let (_, name) = state.retries.pop_first().expect("a first retry");
            state.retry_of.remove(&name);
            due.push((name, at));
        }
        let next = state.retries.first().map(|(at, _)| *at);
        let added = due.into_iter().filter(|(name, at)| state.ask(name.clone(), *at)).count();
        drop(state);
        self.wake(added);
        next
    }

    /// Queues each retry when it is due; runs until dropped.
    pub(crate) async fn run_retries(&self) {
        loop {
            let scheduled = self.retry_scheduled.notified();
            tokio::pin!(scheduled);
            scheduled.as_mut().enable();
            match self.queue_due_retries() {
                Some(next) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(next) => {}
                        () = scheduled => {}
                    }
                }
                None => scheduled.await,
            }
        }
    }
}

/// Runs `workers` reconciles at once, each in a task of its own (plans and serialization use
/// every core), until the queue is closed and the reconciles in flight have ended. `reconcile`
/// returns when to retry a namespace that failed. Dropping the future aborts every reconcile.
pub(crate) async fn run_workers<F, Fut>(queue: Arc<WorkQueue>, workers: usize, reconcile: F)
where
    F: Fn(Taken) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Option<Duration>> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    for _ in 0..workers.max(1) {
        let (queue, reconcile) = (queue.clone(), reconcile.clone());
        tasks.spawn(async move {
            while let Some(taken) = queue.take().await {
                let name = taken.name.clone();
                let retry = reconcile(taken).await;
                queue.finish(&name, retry);
            }
        });
    }
    while let Some(ended) = tasks.join_next().await {
        if let Err(error) = ended
            && error.is_panic()
        {
            std::panic::resume_unwind(error.into_panic());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::controller::cache::intern;

    fn names(queue: &WorkQueue) -> Vec<String> {
        queue.state().order.iter().map(|n| n.to_string()).collect()
    }

    #[tokio::test]
    async fn a_namespace_is_queued_once_however_often_it_is_asked_for() {
        let queue = WorkQueue::default();
        queue.ask_all(["a", "b", "a"].map(intern));
        queue.ask(intern("b"));
        assert_eq!(names(&queue), ["a", "b"]);
        let first = queue.take().await.unwrap();
        assert_eq!(&*first.name, "a");
        queue.ask(intern("a"));
        assert_eq!(names(&queue), ["b"], "asked for while it runs: not queued beside itself");
        queue.finish(&first.name, None);
        assert_eq!(names(&queue), ["b", "a"], "back in the queue when it ends");
        let again = queue.take().await.unwrap();
        assert_eq!(&*again.name, "b");
        let again = queue.take().await.unwrap();
        assert!(again.asked_at >= first.asked_at, "its wait counts from the request made while it ran");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_namespace_is_retried_when_due_and_a_success_drops_its_retry() {
        let queue = Arc::new(WorkQueue::default());
        let timer = tokio::spawn({
            let queue = queue.clone();
            async move { queue.run_retries().await }
        });
        queue.ask_all(["a", "b"].map(intern));
        let (a, b) = (queue.take().await.unwrap(), queue.take().await.unwrap());
        queue.finish(&a.name, Some(Duration::from_secs(10)));
        queue.finish(&b.name, Some(Duration::from_secs(5)));
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(names(&queue), ["b"], "b is due, a is not");
        let b = queue.take().await.unwrap();
        queue.finish(&b.name, None);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(names(&queue), ["a"]);
        let a = queue.take().await.unwrap();
        queue.finish(&a.name, None);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(names(&queue).is_empty(), "nothing is retried after a success");
        timer.abort();
    }

    #[tokio::test]
    async fn workers_never_run_one_namespace_twice_at_once_and_end_when_closed() {
        let queue = Arc::new(WorkQueue::default());
        let (running, most, done) =
            (Arc::new(Mutex::new(HashMap::new())), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let reconcile = {
            let (running, most, done) = (running.clone(), most.clone(), done.clone());
            let queue = queue.clone();
            move |taken: Taken| {
                let (running, most, done, queue) = (running.clone(), most.clone(), done.clone(), queue.clone());
                async move {
                    let at_once = {
                        let mut running = running.lock().unwrap();
                        let count: &mut usize = running.entry(taken.name.to_string()).or_default();
                        *count += 1;
                        *count
                    };
                    most.fetch_max(at_once, Ordering::SeqCst);
                    // Asked for again while it runs, as a watch event would.
                    queue.ask(taken.name.clone());
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    *running.lock().unwrap().get_mut(&*taken.name).unwrap() -= 1;
                    if done.fetch_add(1, Ordering::SeqCst) >= 40 {
                        queue.close();
                    }
                    None
                }
            }
        };
        queue.ask_all(["a", "b", "c"].map(intern));
        tokio::time::timeout(Duration::from_secs(10), run_workers(queue.clone(), 8, reconcile))
            .await
            .expect("the workers end once the queue is closed");
        assert_eq!(most.load(Ordering::SeqCst), 1, "never two reconciles of one namespace at once");
        assert!(done.load(Ordering::SeqCst) > 40, "each namespace asked for while running ran again");
    }
}
