//! Group commit, shared by both backends: saves wait in a queue, and whoever writes takes every
//! save waiting (up to a budget) and writes them together, so under load many webhooks share one
//! Redis script call or one SQLite transaction (one fsync), and alone a webhook is written at once.
//!
//! [`Grouper`] owns the queue and the one save that did not fit into the previous group (it
//! starts the next one, so order is kept and nothing waits twice). The Redis batcher takes groups
//! on a task ([`Grouper::next_async`]), the SQLite writer on its thread ([`Grouper::next_blocking`]).

use tokio::sync::mpsc;

/// Something queued for a group write, with its size in the group's budget.
pub trait Batched {
    /// Rows (messages, statuses, ...) it adds to a group.
    fn size(&self) -> usize;
}

/// Takes groups of queued jobs: the first waiting (or carried over), then every job already
/// queued while the group stays within `max_jobs` jobs and `max_size` rows.
pub struct Grouper<J> {
    queue: mpsc::Receiver<J>,
    carried: Option<J>,
    max_jobs: usize,
    max_size: usize,
}

impl<J: Batched> Grouper<J> {
    /// Groups from `queue` within the budgets (a single job over `max_size` still forms a group of
    /// its own).
    pub fn new(queue: mpsc::Receiver<J>, max_jobs: usize, max_size: usize) -> Self {
        Self {
            queue,
            carried: None,
            max_jobs,
            max_size,
        }
    }

    /// The next group, waiting for its first job; `None` once the queue is closed and empty.
    pub async fn next_async(&mut self) -> Option<Vec<J>> {
        let first = match self.carried.take() {
            Some(job) => job,
            None => self.queue.recv().await?,
        };
        Some(self.fill(first))
    }

    /// The same, blocking the current (non-async) thread while it waits.
    pub fn next_blocking(&mut self) -> Option<Vec<J>> {
        let first = match self.carried.take() {
            Some(job) => job,
            None => self.queue.blocking_recv()?,
        };
        Some(self.fill(first))
    }

    /// Waits until a job is queued (or carried), without taking it: lets a caller wait for work
    /// before it takes a resource (a free call slot), so that jobs pile up meanwhile and leave
    /// together. `false` once the queue is closed and empty.
    pub async fn ready(&mut self) -> bool {
        if self.carried.is_some() {
            return true;
        }
        match self.queue.recv().await {
            Some(job) => {
                self.carried = Some(job);
                true
            }
            None => false,
        }
    }

    fn fill(&mut self, first: J) -> Vec<J> {
        let mut size = first.size();
        let mut group = vec![first];
        while group.len() < self.max_jobs && size < self.max_size {
            match self.queue.try_recv() {
                Ok(job) if size + job.size() > self.max_size => {
                    self.carried = Some(job);
                    break;
                }
                Ok(job) => {
                    size += job.size();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        group
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Batched for usize {
        fn size(&self) -> usize {
            *self
        }
    }

    #[test]
    fn groups_take_what_waits_within_the_budget_and_carry_the_rest_in_order() {
        let (tx, rx) = mpsc::channel(16);
        for n in [3, 4, 5, 1, 1] {
            tx.try_send(n).unwrap();
        }
        drop(tx);
        let mut grouper = Grouper::new(rx, 10, 8);
        assert_eq!(grouper.next_blocking(), Some(vec![3, 4]));
        assert_eq!(grouper.next_blocking(), Some(vec![5, 1, 1]));
        assert_eq!(grouper.next_blocking(), None);
    }

    #[test]
    fn a_job_over_the_budget_forms_a_group_alone_and_the_job_count_is_capped() {
        let (tx, rx) = mpsc::channel(16);
        for n in [20, 1, 1, 1] {
            tx.try_send(n).unwrap();
        }
        drop(tx);
        let mut grouper = Grouper::new(rx, 2, 8);
        assert_eq!(grouper.next_blocking(), Some(vec![20]));
        assert_eq!(grouper.next_blocking(), Some(vec![1, 1]));
        assert_eq!(grouper.next_blocking(), Some(vec![1]));
    }

    #[tokio::test]
    async fn ready_waits_for_work_without_losing_it() {
        let (tx, rx) = mpsc::channel(16);
        let mut grouper = Grouper::new(rx, 10, 10);
        tx.send(2).await.unwrap();
        tx.send(3).await.unwrap();
        assert!(grouper.ready().await);
        assert_eq!(grouper.next_async().await, Some(vec![2, 3]));
        drop(tx);
        assert!(!grouper.ready().await);
    }
}
