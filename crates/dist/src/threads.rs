//! The collectives among threads of one process: the same algorithm as processes, with the
//! exchange in shared memory. It runs the multi-process code paths where c10d is not built
//! (the default build's tests); a job of processes uses [`crate::ProcessGroup`].

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::Collective;
use crate::error::DistError;

/// What the members of a [`ThreadGroup`] share: one slot per rank, and where they meet.
#[derive(Debug)]
struct Shared {
    state: Mutex<Meeting>,
    changed: Condvar,
}

/// The slots and a reusable barrier that a member's departure breaks.
#[derive(Debug)]
struct Meeting {
    slots: Vec<Vec<u8>>,
    arrived: usize,
    generation: u64,
    /// A member was dropped (its thread returned, perhaps with an error): no meeting can
    /// complete any more.
    departed: bool,
}

/// One member of a group of threads: give each thread its own and call the same operations in
/// the same order on all of them. When a member is dropped, the others' operations fail rather
/// than wait for it, as a process group's do when a peer dies.
#[derive(Debug)]
pub struct ThreadGroup {
    rank: usize,
    world_size: usize,
    shared: Arc<Shared>,
}

impl ThreadGroup {
    /// The `world_size` members of a new group, in rank order.
    pub fn new(world_size: usize) -> Vec<ThreadGroup> {
        let meeting = Meeting { slots: vec![Vec::new(); world_size], arrived: 0, generation: 0, departed: false };
        let shared = Arc::new(Shared { state: Mutex::new(meeting), changed: Condvar::new() });
        (0..world_size).map(|rank| ThreadGroup { rank, world_size, shared: shared.clone() }).collect()
    }

    /// Every member's `local`, in rank order: each writes its slot, all meet, each reads every
    /// slot, all meet again before a slot is reused.
    fn exchange(&self, local: Vec<u8>) -> Result<Vec<Vec<u8>>, DistError> {
        let mut state = self.lock()?;
        state.slots[self.rank] = local;
        state = self.meet(state)?;
        let all = state.slots.clone();
        drop(self.meet(state)?);
        Ok(all)
    }

    /// Waits until every member has arrived (the last one in wakes the others).
    fn meet<'a>(&'a self, mut state: MutexGuard<'a, Meeting>) -> Result<MutexGuard<'a, Meeting>, DistError> {
        let generation = state.generation;
        state.arrived += 1;
        if state.arrived == self.world_size {
            state.arrived = 0;
            state.generation += 1;
            self.shared.changed.notify_all();
            return Ok(state);
        }
        while state.generation == generation {
            if state.departed {
                return Err(departed());
            }
            state = self.shared.changed.wait(state).map_err(|_| departed())?;
        }
        Ok(state)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Meeting>, DistError> {
        let state = self.shared.state.lock().map_err(|_| departed())?;
        if state.departed {
            return Err(departed());
        }
        Ok(state)
    }
}

impl Drop for ThreadGroup {
    fn drop(&mut self) {
        if let Ok(mut state) = self.shared.state.lock() {
            state.departed = true;
            self.shared.changed.notify_all();
        }
    }
}

fn departed() -> DistError {
    DistError::Collective {
        operation: "exchange",
        timeout_s: 0,
        reason: "a member of the thread group has left".into(),
    }
}

fn to_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn to_floats(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

impl Collective for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world_size
    }
    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<(), DistError> {
        let all = self.exchange(to_bytes(data))?;
        // Summed in rank order on every member, so every member gets the same bits.
        data.fill(0.0);
        for part in &all {
            if part.len() != data.len() * 4 {
                return Err(DistError::Collective {
                    operation: "all_reduce_sum",
                    timeout_s: 0,
                    reason: format!("buffers of {} and {} floats", data.len(), part.len() / 4),
                });
            }
            for (sum, value) in data.iter_mut().zip(to_floats(part)) {
                *sum += value;
            }
        }
        Ok(())
    }
    fn all_gather(&self, local: &[f32]) -> Result<Vec<Vec<f32>>, DistError> {
        Ok(self.exchange(to_bytes(local))?.iter().map(|part| to_floats(part)).collect())
    }
    fn all_gather_bytes(&self, local: &[u8]) -> Result<Vec<Vec<u8>>, DistError> {
        self.exchange(local.to_vec())
    }
    fn broadcast(&self, data: &mut [f32], root: usize) -> Result<(), DistError> {
        if root >= self.world_size {
            return Err(DistError::Rank { rank: root, world_size: self.world_size });
        }
        let all = self.exchange(to_bytes(data))?;
        data.copy_from_slice(&to_floats(&all[root]));
        Ok(())
    }
    fn barrier(&self) -> Result<(), DistError> {
        self.exchange(Vec::new()).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_sum_gather_and_broadcast_in_rank_order() {
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = ThreadGroup::new(3)
                .into_iter()
                .map(|member| {
                    scope.spawn(move || {
                        let r = member.rank() as f32;
                        let mut sum = vec![r, 1.0];
                        member.all_reduce_sum(&mut sum).unwrap();
                        let gathered = member.all_gather(&vec![r; member.rank()]).unwrap();
                        let mut root = vec![r * 10.0];
                        member.broadcast(&mut root, 2).unwrap();
                        member.barrier().unwrap();
                        // Lengths that are not a multiple of four, NaN bit patterns included.
                        let mut bytes = match member.rank() {
                            1 => (0..10_000_003u32).map(|i| (i % 251) as u8).collect(),
                            _ => Vec::new(),
                        };
                        member.broadcast_bytes(&mut bytes, 1).unwrap();
                        (sum, gathered, root, bytes)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (sum, gathered, root, bytes) in results {
            assert_eq!(bytes, (0..10_000_003u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
            assert_eq!(sum, vec![3.0, 3.0]);
            assert_eq!(gathered, vec![vec![], vec![1.0], vec![2.0, 2.0]]);
            assert_eq!(root, vec![20.0]);
        }
    }

    #[test]
    fn a_member_that_leaves_fails_the_others_instead_of_hanging() {
        let mut members = ThreadGroup::new(2);
        let gone = members.pop().unwrap();
        let stays = members.pop().unwrap();
        let waiting = std::thread::spawn(move || stays.all_reduce_sum(&mut [1.0]));
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(gone);
        let err = waiting.join().unwrap().unwrap_err().to_string();
        assert!(err.contains("has left"), "{err}");
    }
}
