//! The dynamic schedule: rank 0 hands out chunks one at a time as ranks ask. Each rank starts
//! where its static share would, and keeps taking the chunk after its last one while it is
//! free, so its decoder runs on without seeking; a rank whose own run is taken (it was faster)
//! takes over the second half of the longest run still free. Fast ranks so relieve slow ones,
//! and decoding stays mostly sequential. Which rank computes a chunk never changes its bytes.

use super::plan::split;

pub struct DynamicSchedule {
    /// The chunks still to compute, in order, and whether each is still free.
    chunks: Vec<usize>,
    free: Vec<bool>,
    /// Per rank, the position (in `chunks`) it would continue at.
    cursor: Vec<usize>,
}

impl DynamicSchedule {
    pub fn new(chunks: Vec<usize>, ranks: usize) -> DynamicSchedule {
        let cursor = split(chunks.len(), ranks)
            .into_iter()
            .map(|r| r.start)
            .collect();
        DynamicSchedule {
            free: vec![true; chunks.len()],
            chunks,
            cursor,
        }
    }

    /// The next chunk for `rank`, or `None` when every chunk is taken.
    pub fn next_for(&mut self, rank: usize) -> Option<usize> {
        let position = match self.cursor[rank] {
            p if self.free.get(p) == Some(&true) => p,
            _ => self.second_half_of_longest_free_run()?,
        };
        self.free[position] = false;
        self.cursor[rank] = position + 1;
        Some(self.chunks[position])
    }

    fn second_half_of_longest_free_run(&self) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        let mut start = 0;
        for position in 0..=self.free.len() {
            if self.free.get(position) == Some(&true) {
                continue;
            }
            let length = position - start;
            if length > 0 && best.is_none_or(|(_, l)| length > l) {
                best = Some((start, length));
            }
            start = position + 1;
        }
        best.map(|(start, length)| start + length / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_asking_in_turn_get_their_static_runs() {
        let mut schedule = DynamicSchedule::new((0..6).collect(), 2);
        let mut given = vec![Vec::new(), Vec::new()];
        for _ in 0..3 {
            for (rank, chunks) in given.iter_mut().enumerate() {
                chunks.push(schedule.next_for(rank).unwrap());
            }
        }
        assert_eq!(given, vec![vec![0, 1, 2], vec![3, 4, 5]]);
        assert_eq!(schedule.next_for(0), None);
    }

    #[test]
    fn a_fast_rank_takes_over_half_of_a_slow_ranks_run() {
        let mut schedule = DynamicSchedule::new((10..20).collect(), 2);
        assert_eq!(schedule.next_for(1), Some(15));
        assert_eq!(schedule.next_for(0), Some(10));
        let fast: Vec<usize> = (0..4).map(|_| schedule.next_for(1).unwrap()).collect();
        assert_eq!(fast, vec![16, 17, 18, 19]);
        // Rank 1's run is done; rank 0 still has 11..=14 free: rank 1 takes the second half.
        assert_eq!(schedule.next_for(1), Some(13));
        assert_eq!(schedule.next_for(0), Some(11));
        assert_eq!(schedule.next_for(1), Some(14));
        assert_eq!(schedule.next_for(0), Some(12));
        assert_eq!(schedule.next_for(0), None);
        assert_eq!(schedule.next_for(1), None);
    }

    #[test]
    fn every_chunk_is_given_exactly_once_whatever_the_order_of_asking() {
        let mut schedule = DynamicSchedule::new(vec![1, 3, 4, 7, 8, 9, 12], 3);
        let mut given = Vec::new();
        let order = [2, 2, 0, 1, 2, 2, 2, 1, 0, 0, 1, 2];
        for rank in order {
            given.extend(schedule.next_for(rank));
        }
        given.sort_unstable();
        assert_eq!(given, vec![1, 3, 4, 7, 8, 9, 12]);
    }
}
