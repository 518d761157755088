//! Which offset of a partition may be committed.
//!
//! Kafka commits a position per partition ("everything before this offset
//! is done"), but triage acks batches out of order (two workers, retries).
//! The tracker keeps the offsets handed out and not yet finished; the
//! committable position is the lowest unfinished offset, or one past the
//! highest handed out when nothing is unfinished. Pure bookkeeping, no I/O.

use std::collections::{BTreeMap, HashMap};

/// One message handed out and not finished yet.
#[derive(Debug, Clone)]
pub struct InFlight {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// Deliveries so far (1 on first delivery).
    pub attempt: u32,
    /// Nacked and waiting in the retry buffer: no worker is busy with it.
    pub waiting_retry: bool,
}

#[derive(Debug, Default)]
struct PartitionState {
    in_flight: BTreeMap<i64, InFlight>,
    /// One past the highest offset handed out.
    next: i64,
    /// The position last reported as committable (to skip no-op commits).
    committed: Option<i64>,
}

impl PartitionState {
    fn committable(&self) -> i64 {
        self.in_flight.keys().next().copied().unwrap_or(self.next)
    }
}

/// Unfinished offsets of every partition this consumer owns.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<i32, PartitionState>,
}

impl OffsetTracker {
    /// Records a message handed out for the first time.
    pub fn delivered(&mut self, partition: i32, offset: i64, entry: InFlight) {
        let state = self.partitions.entry(partition).or_default();
        state.next = state.next.max(offset + 1);
        state.in_flight.insert(offset, entry);
    }

    /// The unfinished entry at `offset`, if this consumer still owns it.
    pub fn get_mut(&mut self, partition: i32, offset: i64) -> Option<&mut InFlight> {
        self.partitions.get_mut(&partition)?.in_flight.get_mut(&offset)
    }

    /// Marks offsets finished; returns the partitions whose committable
    /// position moved, with the new position.
    pub fn finish(&mut self, done: impl IntoIterator<Item = (i32, i64)>) -> Vec<(i32, i64)> {
        let mut touched = Vec::new();
        for (partition, offset) in done {
            if let Some(state) = self.partitions.get_mut(&partition)
                && state.in_flight.remove(&offset).is_some()
                && !touched.contains(&partition)
            {
                touched.push(partition);
            }
        }
        let mut moved = Vec::new();
        for partition in touched {
            if let Some(state) = self.partitions.get_mut(&partition) {
                let position = state.committable();
                if state.committed != Some(position) {
                    state.committed = Some(position);
                    moved.push((partition, position));
                }
            }
        }
        moved.sort_unstable();
        moved
    }

    /// Unfinished messages of `partition`.
    pub fn unfinished(&self, partition: i32) -> usize {
        self.partitions.get(&partition).map_or(0, |s| s.in_flight.len())
    }

    /// Unfinished messages of every partition.
    pub fn total_unfinished(&self) -> usize {
        self.partitions.values().map(|s| s.in_flight.len()).sum()
    }

    /// Messages of `partitions` a worker is busy with (handed out, not
    /// waiting for a retry): what a drain waits for.
    pub fn busy(&self, partitions: Option<&[i32]>) -> usize {
        self.partitions
            .iter()
            .filter(|(p, _)| partitions.is_none_or(|wanted| wanted.contains(p)))
            .map(|(_, s)| s.in_flight.values().filter(|e| !e.waiting_retry).count())
            .sum()
    }

    /// The committable position of `partition`, if anything was handed out from it.
    pub fn committable(&self, partition: i32) -> Option<i64> {
        self.partitions.get(&partition).map(PartitionState::committable)
    }

    /// Every partition's committable position.
    pub fn all_committable(&self) -> Vec<(i32, i64)> {
        let mut all: Vec<(i32, i64)> = self.partitions.iter().map(|(p, s)| (*p, s.committable())).collect();
        all.sort_unstable();
        all
    }

    /// Forgets a partition this consumer no longer owns; its unfinished
    /// messages will be redelivered to the new owner from the last commit.
    pub fn forget(&mut self, partition: i32) -> usize {
        self.partitions.remove(&partition).map_or(0, |s| s.in_flight.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> InFlight {
        InFlight { key: None, payload: Vec::new(), attempt: 1, waiting_retry: false }
    }

    #[test]
    fn out_of_order_acks_commit_only_the_finished_prefix() {
        let mut tracker = OffsetTracker::default();
        for offset in 10..15 {
            tracker.delivered(0, offset, entry());
        }
        // 12 and 13 finish first: offset 10 is still unfinished, nothing moves past it.
        assert_eq!(tracker.finish([(0, 12), (0, 13)]), vec![(0, 10)]);
        assert_eq!(tracker.finish([(0, 10)]), vec![(0, 11)]);
        assert_eq!(tracker.finish([(0, 11)]), vec![(0, 14)]);
        assert_eq!(tracker.finish([(0, 14)]), vec![(0, 15)]);
        assert_eq!(tracker.total_unfinished(), 0);
    }

    #[test]
    fn partitions_are_independent_and_unknown_acks_are_ignored() {
        let mut tracker = OffsetTracker::default();
        tracker.delivered(0, 0, entry());
        tracker.delivered(1, 5, entry());
        tracker.delivered(1, 6, entry());
        assert_eq!(tracker.finish([(1, 6), (7, 1), (0, 99)]), vec![(1, 5)]);
        assert_eq!(tracker.finish([(0, 0)]), vec![(0, 1)]);
        assert_eq!(tracker.unfinished(1), 1);
        tracker.get_mut(1, 5).unwrap().waiting_retry = true;
        assert_eq!(tracker.busy(None), 0);
        assert_eq!(tracker.busy(Some(&[0])), 0);
        // Finishing the same offset twice moves nothing.
        assert!(tracker.finish([(0, 0)]).is_empty());
    }

    #[test]
    fn a_forgotten_partition_commits_nothing_more() {
        let mut tracker = OffsetTracker::default();
        tracker.delivered(3, 1, entry());
        assert_eq!(tracker.forget(3), 1);
        assert!(tracker.finish([(3, 1)]).is_empty());
        assert_eq!(tracker.committable(3), None);
    }
}
