//! A set of workers (`listen[i].workers`): where a listener's connections may live. Every
//! dispatch policy picks among it and the rebalancer never moves a connection out of it.

use crate::settings::ListenSettings;

/// Words of the bitmap: 256 bits hold every worker index (at most 255 workers).
const WORDS: usize = 4;

/// A set of worker indices, as a fixed bitmap (no allocation, `Copy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct WorkerSet {
    bits: [u64; WORDS],
}

impl WorkerSet {
    /// Workers `0..workers`.
    pub(crate) fn all(workers: usize) -> WorkerSet {
        WorkerSet::of(0..workers)
    }

    /// The workers listed; indices beyond the bitmap are left out.
    pub(crate) fn of(workers: impl IntoIterator<Item = usize>) -> WorkerSet {
        let mut set = WorkerSet::default();
        for w in workers {
            if w < WORDS * 64 {
                set.bits[w / 64] |= 1 << (w % 64);
            }
        }
        set
    }

    /// Where the connections of `listen` may live among `workers` workers: its `workers` list,
    /// or every worker when it has none.
    pub(crate) fn for_listener(listen: &ListenSettings, workers: usize) -> WorkerSet {
        match &listen.workers {
            Some(list) => WorkerSet::of(list.iter().copied().filter(|&w| w < workers)),
            None => WorkerSet::all(workers),
        }
    }

    /// Whether worker `w` is in the set.
    pub(crate) fn contains(&self, w: usize) -> bool {
        w < WORDS * 64 && self.bits[w / 64] & (1 << (w % 64)) != 0
    }

    /// How many workers the set holds.
    pub(crate) fn len(&self) -> usize {
        self.bits.iter().map(|b| b.count_ones() as usize).sum()
    }

    /// The workers, in increasing order (one step per worker in the set, not per bit).
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.bits.iter().enumerate().flat_map(|(i, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                Some(i * 64 + bit)
            })
        })
    }

    /// The `n`th worker of the set in increasing order, counting from 0.
    pub(crate) fn nth(&self, n: usize) -> Option<usize> {
        self.iter().nth(n)
    }

    /// The first worker of the set after `w`, wrapping around to the smallest.
    pub(crate) fn next_after(&self, w: usize) -> Option<usize> {
        self.iter().find(|&x| x > w).or_else(|| self.iter().next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_holds_exactly_its_workers() {
        let set = WorkerSet::of([0, 2, 200, 254]);
        assert_eq!(set.iter().collect::<Vec<_>>(), [0, 2, 200, 254]);
        assert_eq!(set.len(), 4);
        assert_eq!(set.nth(2), Some(200));
        assert_eq!(set.nth(4), None);
        assert_eq!(WorkerSet::default().len(), 0);
        assert_eq!(WorkerSet::all(3).iter().collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn next_after_cycles_through_the_set() {
        let set = WorkerSet::of([1, 3]);
        assert_eq!(set.next_after(0), Some(1));
        assert_eq!(set.next_after(1), Some(3));
        assert_eq!(set.next_after(3), Some(1));
        assert_eq!(WorkerSet::default().next_after(0), None);
    }
}
