//! A slab of trie nodes addressed by index.
//!
//! Both tries keep their nodes here rather than in nested boxes so that no
//! operation recurses: insertion, removal, pruning, matching and dropping are
//! loops, whatever depth a (possibly hostile) topic reaches. Freed slots are
//! reused before the slab grows, so subscribe/unsubscribe churn with a stable
//! number of live nodes does not grow memory; the slot vector keeps its
//! high-water mark of `size_of::<Option<N>>()` bytes per slot, while each
//! freed node's own maps and strings are released at once.

/// Index of a node in an [`Arena`].
pub(crate) type NodeId = usize;

/// The root is allocated by [`Arena::with_root`] and never freed.
pub(crate) const ROOT: NodeId = 0;

#[derive(Debug)]
pub(crate) struct Arena<N> {
    /// `Some` for live nodes, `None` for free slots.
    slots: Vec<Option<N>>,
    /// Indices of the `None` slots, reused last-freed first.
    free: Vec<NodeId>,
    /// Number of `Some` slots.
    live: usize,
}

impl<N> Arena<N> {
    /// An arena holding only `root`, at [`ROOT`].
    pub(crate) fn with_root(root: N) -> Self {
        Self {
            slots: vec![Some(root)],
            free: Vec::new(),
            live: 1,
        }
    }

    /// Stores `node` and returns its id. Amortized O(1).
    pub(crate) fn alloc(&mut self, node: N) -> NodeId {
        self.live += 1;
        while let Some(id) = self.free.pop() {
            if let Some(slot @ None) = self.slots.get_mut(id) {
                *slot = Some(node);
                return id;
            }
        }
        self.slots.push(Some(node));
        self.slots.len() - 1
    }

    /// Drops the node at `id`. The root is never freed. O(1) plus the drop.
    pub(crate) fn free(&mut self, id: NodeId) {
        if id == ROOT {
            return;
        }
        if let Some(slot) = self.slots.get_mut(id) {
            if slot.take().is_some() {
                self.live -= 1;
                self.free.push(id);
            }
        }
    }

    pub(crate) fn get(&self, id: NodeId) -> Option<&N> {
        self.slots.get(id).and_then(Option::as_ref)
    }

    pub(crate) fn get_mut(&mut self, id: NodeId) -> Option<&mut N> {
        self.slots.get_mut(id).and_then(Option::as_mut)
    }

    /// Number of live nodes, root included.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Number of slots ever allocated (live plus free): the high-water mark.
    #[cfg(test)]
    pub(crate) fn slots(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_freed_slots() {
        let mut arena = Arena::with_root(0u8);
        let a = arena.alloc(1);
        let b = arena.alloc(2);
        assert_eq!(arena.live(), 3);
        arena.free(a);
        arena.free(a);
        assert_eq!(arena.live(), 2);
        assert_eq!(arena.get(a), None);
        let c = arena.alloc(3);
        assert_eq!(c, a);
        assert_eq!(arena.get(c), Some(&3));
        assert_eq!(arena.get(b), Some(&2));
        assert_eq!(arena.slots(), 3);
        arena.free(ROOT);
        assert_eq!(arena.get(ROOT), Some(&0));
    }
}
