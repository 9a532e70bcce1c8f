//! A sorted multiset of `u64` kept in blocks: a room's members in order of activity, at about ten
//! bytes each, with inserts and removals that move at most one block.
//!
//! A B-tree would spend more than its keys on nodes and pointers; one sorted vector would move
//! millions of entries on each change of a large room. Blocks of up to [`BLOCK`] values, split
//! when full and merged when nearly empty, keep both costs small.

/// Most values a block holds (4 KiB of them).
const BLOCK: usize = 512;

#[derive(Debug, Default)]
pub struct Ordered {
    /// Each block sorted, each non-empty, every value of a block at or below every value of the
    /// next one.
    blocks: Vec<Vec<u64>>,
    /// The last value of each block, side by side: finding a block reads one small array
    /// instead of one cache line per block visited.
    lasts: Vec<u64>,
    len: usize,
}

impl Ordered {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The multiset of `values` (in any order), in full blocks: how a rebuild loads a room at
    /// once instead of inserting its members one by one.
    pub fn from_values(mut values: Vec<u64>) -> Ordered {
        values.sort_unstable();
        let blocks: Vec<Vec<u64>> = values.chunks(BLOCK).map(<[u64]>::to_vec).collect();
        let lasts = blocks.iter().filter_map(|b| b.last().copied()).collect();
        Ordered {
            blocks,
            lasts,
            len: values.len(),
        }
    }

    /// The block where `value` is or would go: the first whose last value is at or above it
    /// (the last block for a value above all).
    fn block_of(&self, value: u64) -> usize {
        let i = self.lasts.partition_point(|last| *last < value);
        i.min(self.blocks.len().saturating_sub(1))
    }

    /// Records block `i`'s last value after it changed.
    fn note_last(&mut self, i: usize) {
        if let (Some(last), Some(slot)) = (
            self.blocks.get(i).and_then(|b| b.last()),
            self.lasts.get_mut(i),
        ) {
            *slot = *last;
        }
    }

    pub fn insert(&mut self, value: u64) {
        self.len += 1;
        if self.blocks.is_empty() {
            self.blocks.push(vec![value]);
            self.lasts.push(value);
            return;
        }
        let i = self.block_of(value);
        let last = i + 1 == self.blocks.len();
        let Some(block) = self.blocks.get_mut(i) else {
            return;
        };
        if block.len() >= BLOCK && last && block.last() <= Some(&value) {
            // Past the end of the last block (members becoming active, or joining, go to the
            // top): a new block, leaving the full one full.
            let mut top = Vec::with_capacity(BLOCK);
            top.push(value);
            self.blocks.push(top);
            self.lasts.push(value);
            return;
        }
        if block.len() >= BLOCK {
            // Two halves, each with room for a full block, so neither grows by doubling.
            let mut upper = Vec::with_capacity(BLOCK);
            upper.extend_from_slice(block.get(BLOCK / 2..).unwrap_or_default());
            block.truncate(BLOCK / 2);
            block.reserve_exact(BLOCK - block.len());
            let upper_last = upper.last().copied().unwrap_or(value);
            self.blocks.insert(i + 1, upper);
            self.lasts.insert(i + 1, upper_last);
            self.note_last(i);
            self.len -= 1;
            return self.insert(value);
        }
        let at = block.partition_point(|v| *v < value);
        block.insert(at, value);
        self.note_last(i);
    }

    /// Removes one occurrence of `value`; whether there was one.
    pub fn remove(&mut self, value: u64) -> bool {
        if self.blocks.is_empty() {
            return false;
        }
        let i = self.block_of(value);
        let Some(block) = self.blocks.get_mut(i) else {
            return false;
        };
        let Ok(at) = block.binary_search(&value) else {
            return false;
        };
        block.remove(at);
        self.len -= 1;
        let len = block.len();
        if len == 0 {
            self.blocks.remove(i);
            self.lasts.remove(i);
        } else {
            self.note_last(i);
            if len < BLOCK / 4 {
                self.merge_small(i);
            }
        }
        true
    }

    /// A block left a quarter full joins a neighbour that has room, so memory follows the count.
    fn merge_small(&mut self, i: usize) {
        let len = |j: usize| self.blocks.get(j).map_or(usize::MAX, Vec::len);
        let (into, from) = if len(i + 1).saturating_add(len(i)) <= BLOCK {
            (i, i + 1)
        } else if i > 0 && len(i - 1).saturating_add(len(i)) <= BLOCK {
            (i - 1, i)
        } else {
            if let [only] = self.blocks.as_mut_slice() {
                // A small room that shrank: its only block gives back what it no longer needs.
                if only.capacity() > 4 * only.len() {
                    only.shrink_to(2 * only.len());
                }
            }
            return;
        };
        let moved = self.blocks.remove(from);
        self.lasts.remove(from);
        if let Some(block) = self.blocks.get_mut(into) {
            block.reserve_exact(moved.len());
            block.extend_from_slice(&moved);
        }
        self.note_last(into);
    }

    /// Whether `value` is held (what the tests check the blocks against; pages no longer ask).
    #[cfg(test)]
    fn contains(&self, value: u64) -> bool {
        !self.blocks.is_empty()
            && self
                .blocks
                .get(self.block_of(value))
                .is_some_and(|b| b.binary_search(&value).is_ok())
    }

    /// The values below `bound` (all when `None`), highest first, each as often as it is held.
    pub fn below(&self, bound: Option<u64>) -> impl Iterator<Item = u64> + '_ {
        // The blocks to walk (`..blocks`), and how much of the last of them is below the bound.
        let (blocks, cut) = match bound {
            Some(bound) if !self.blocks.is_empty() => {
                let i = self.block_of(bound);
                let cut = self
                    .blocks
                    .get(i)
                    .map(|b| b.partition_point(|v| *v < bound));
                (i + 1, cut.map(|cut| (i, cut)))
            }
            Some(_) => (0, None),
            None => (self.blocks.len(), None),
        };
        self.blocks
            .get(..blocks)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .rev()
            .flat_map(move |(j, block)| {
                let upto = match cut {
                    Some((i, cut)) if i == j => cut,
                    _ => block.len(),
                };
                block.get(..upto).unwrap_or_default().iter().rev().copied()
            })
    }

    /// The distinct values below `bound` (all when `None`), highest first.
    pub fn distinct_below(&self, bound: Option<u64>) -> impl Iterator<Item = u64> + '_ {
        let mut last = None;
        self.below(bound).filter(move |v| {
            let new = last != Some(*v);
            last = Some(*v);
            new
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(o: &Ordered, model: &[u64]) {
        let mut sorted = model.to_vec();
        sorted.sort_unstable();
        let all: Vec<u64> = o.below(None).collect();
        sorted.reverse();
        assert_eq!(all, sorted);
        assert_eq!(o.len(), model.len());
        assert!(o.blocks.iter().all(|b| !b.is_empty() && b.len() <= BLOCK));
        let lasts: Vec<u64> = o.blocks.iter().filter_map(|b| b.last().copied()).collect();
        assert_eq!(o.lasts, lasts);
        assert!(o.blocks.iter().all(|b| b.capacity() <= BLOCK.max(8)));
    }

    #[test]
    fn it_holds_a_sorted_multiset_through_splits_and_merges() {
        let mut random = super::super::random_below(0x9e37_79b9_7f4a_7c15);
        let mut o = Ordered::default();
        let mut model = Vec::new();
        for round in 0..20_000 {
            let v = random(3000);
            if round % 3 == 2 {
                let had = model.iter().position(|x| *x == v);
                assert_eq!(o.remove(v), had.is_some());
                if let Some(i) = had {
                    model.swap_remove(i);
                }
            } else {
                o.insert(v);
                model.push(v);
            }
            assert_eq!(o.contains(v), model.contains(&v));
        }
        check(&o, &model);
        assert!(o.blocks.len() > 10, "{} blocks", o.blocks.len());
        for v in model.clone() {
            assert!(o.remove(v));
        }
        check(&o, &[]);
        assert!(o.blocks.is_empty());
    }

    #[test]
    fn a_room_loaded_at_once_is_the_same_multiset_in_full_blocks() {
        let values: Vec<u64> = (0..2000u64).map(|v| (v * 7919) % 1500).collect();
        let mut o = Ordered::from_values(values.clone());
        check(&o, &values);
        assert_eq!(o.blocks.len(), 4);
        o.insert(3);
        assert!(o.remove(3));
        check(&o, &values);
    }

    #[test]
    fn members_that_go_to_the_top_leave_full_blocks_behind() {
        let mut o = Ordered::default();
        for v in 0..10 * BLOCK as u64 {
            o.insert(v);
        }
        assert_eq!(o.blocks.len(), 10);
        assert!(o.blocks.iter().all(|b| b.len() == BLOCK));
    }

    #[test]
    fn below_walks_down_from_a_bound_and_distinct_skips_repeats() {
        let mut o = Ordered::default();
        for v in [5, 1, 9, 5, 7, 3, 5] {
            o.insert(v);
        }
        assert_eq!(o.below(Some(7)).collect::<Vec<_>>(), vec![5, 5, 5, 3, 1]);
        assert_eq!(o.below(Some(6)).collect::<Vec<_>>(), vec![5, 5, 5, 3, 1]);
        assert_eq!(o.below(Some(100)).count(), 7);
        assert_eq!(o.below(Some(1)).count(), 0);
        assert_eq!(o.below(Some(0)).count(), 0);
        assert_eq!(
            o.distinct_below(None).collect::<Vec<_>>(),
            vec![9, 7, 5, 3, 1]
        );
        assert_eq!(Ordered::default().below(Some(3)).count(), 0);
        // Across many blocks.
        let mut big = Ordered::default();
        for v in 0..5000 {
            big.insert(v * 2);
        }
        assert_eq!(
            big.below(Some(4001)).take(3).collect::<Vec<_>>(),
            vec![4000, 3998, 3996]
        );
        assert_eq!(big.below(Some(4000)).next(), Some(3998));
        assert_eq!(big.below(Some(2)).collect::<Vec<_>>(), vec![0]);
    }
}
