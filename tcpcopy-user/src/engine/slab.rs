//! Session storage: slots in fixed-size chunks.
//!
//! Indices are stable for a value's lifetime; a slot's generation changes
//! each time it is freed, so stale references (timer entries) can tell.
//! Chunks are allocated as needed and never moved: growing costs no copy
//! of the existing sessions and wastes at most one partly used chunk (a
//! doubling `Vec` would waste up to half of its capacity).

/// Slots per chunk.
const CHUNK: usize = 1024;

pub struct Slot<T> {
    pub generation: u32,
    pub value: Option<T>,
}

pub struct Slab<T> {
    /// Arrays, not slices: their length is known where a slot is looked
    /// up, so indexing one is not bounds-checked again.
    chunks: Vec<Box<[Slot<T>; CHUNK]>>,
    free: Vec<u32>,
    /// Slots handed out so far (used or freed).
    used_slots: u32,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            free: Vec::new(),
            used_slots: 0,
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Values stored.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores `value`; returns its index.
    pub fn insert(&mut self, value: T) -> u32 {
        self.insert_with(|| value)
    }

    /// Stores the value `make` returns, built in its slot rather than
    /// moved there (a large value costs a copy); returns its index.
    pub fn insert_with(&mut self, make: impl FnOnce() -> T) -> u32 {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                let i = self.used_slots;
                if i as usize == self.chunks.len() * CHUNK {
                    // Built on the heap (a whole chunk on the stack
                    // could overflow it).
                    let chunk: Box<[Slot<T>]> = (0..CHUNK)
                        .map(|_| Slot {
                            generation: 0,
                            value: None,
                        })
                        .collect();
                    let Ok(chunk) = chunk.try_into() else {
                        unreachable!("{CHUNK} slots collected");
                    };
                    self.chunks.push(chunk);
                }
                self.used_slots += 1;
                i
            }
        };
        let slot = self.slot_mut(idx).expect("allocated above");
        debug_assert!(slot.value.is_none());
        slot.value = Some(make());
        self.len += 1;
        idx
    }

    /// Takes the value out of slot `idx` and frees the slot.
    pub fn remove(&mut self, idx: u32) -> Option<T> {
        let slot = self.slot_mut(idx)?;
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(idx);
        self.len -= 1;
        Some(value)
    }

    pub fn slot(&self, idx: u32) -> Option<&Slot<T>> {
        let i = idx as usize;
        self.chunks.get(i / CHUNK).map(|c| &c[i % CHUNK])
    }

    pub fn slot_mut(&mut self, idx: u32) -> Option<&mut Slot<T>> {
        let i = idx as usize;
        self.chunks.get_mut(i / CHUNK).map(|c| &mut c[i % CHUNK])
    }

    pub fn get(&self, idx: u32) -> Option<&T> {
        self.slot(idx)?.value.as_ref()
    }

    pub fn get_mut(&mut self, idx: u32) -> Option<&mut T> {
        self.slot_mut(idx)?.value.as_mut()
    }

    /// Every stored value with its index.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.chunks
            .iter()
            .flat_map(|c| c.iter())
            .enumerate()
            .filter_map(|(i, s)| s.value.as_ref().map(|v| (i as u32, v)))
    }

    /// Indices of every stored value (a snapshot).
    pub fn indices(&self) -> Vec<u32> {
        self.iter().map(|(i, _)| i).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_stable_and_generations_change_on_reuse() {
        let mut s = Slab::default();
        let ids: Vec<u32> = (0..3000).map(|i| s.insert(i)).collect();
        assert_eq!(s.len(), 3000);
        assert_eq!(s.get(ids[2500]), Some(&2500));
        let gen_before = s.slot(ids[7]).unwrap().generation;
        assert_eq!(s.remove(ids[7]), Some(7));
        assert_eq!(s.remove(ids[7]), None);
        assert_eq!(s.get(ids[7]), None);
        let again = s.insert(99);
        assert_eq!(again, ids[7], "freed slots are reused");
        assert_ne!(s.slot(again).unwrap().generation, gen_before);
        assert_eq!(s.iter().count(), 3000);
        assert_eq!(s.chunks.len(), 3);
        assert!(s.get(1 << 30).is_none());
    }
}
