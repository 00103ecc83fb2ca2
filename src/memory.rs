//! What whole answers may hold of an isolate's memory at once. A Worker's isolate has 128 MB,
//! shared by every request it serves; past it the isolate is reset, which cuts every other
//! user's stream and loses the settlements it holds. A non-stream answer is read whole (up to
//! `MAX_ANSWER_BYTES`) before it is passed on, so a few large ones at once could reach that.

/// The memory whole answers (and audio uploads, until sent) may hold in one isolate at once, counted as `WEIGHT` times the
/// bytes read: the growing buffer's spare capacity (it doubles) and the copy handed to the
/// runtime for the client come on top of the bytes themselves.
pub const ANSWER_MEMORY_BUDGET: usize = 64 << 20;
/// Bytes of memory a byte of a whole answer may cost at its peak (see `ANSWER_MEMORY_BUDGET`).
pub const WEIGHT: usize = 3;

/// The whole-answer memory in use in one isolate.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AnswerMemory {
    held: usize,
}

impl AnswerMemory {
    /// Takes the memory of `bytes` more bytes of answer, if it fits in `budget`.
    pub fn take(&mut self, bytes: usize, budget: usize) -> bool {
        let cost = bytes.saturating_mul(WEIGHT);
        match self.held.checked_add(cost) {
            Some(held) if held <= budget => {
                self.held = held;
                true
            }
            Some(_) | None => false,
        }
    }

    /// Gives back what `take` took for `bytes` bytes.
    pub fn give_back(&mut self, bytes: usize) {
        self.held = self.held.saturating_sub(bytes.saturating_mul(WEIGHT));
    }

    /// Whether another answer may start: some room is left for it.
    pub fn has_room(&self, budget: usize) -> bool {
        self.held < budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_held_up_to_the_budget_and_given_back() {
        let mut memory = AnswerMemory::default();
        let sixteen_mib = 16 << 20;
        assert!(
            memory.take(sixteen_mib, ANSWER_MEMORY_BUDGET),
            "one answer at the cap fits"
        );
        assert!(
            !memory.take(sixteen_mib, ANSWER_MEMORY_BUDGET),
            "a second one would pass the budget"
        );
        assert!(memory.has_room(ANSWER_MEMORY_BUDGET));
        assert!(memory.take(1 << 20, ANSWER_MEMORY_BUDGET));
        memory.give_back(sixteen_mib);
        memory.give_back(1 << 20);
        assert_eq!(memory, AnswerMemory::default());
        assert!(!memory.take(usize::MAX, ANSWER_MEMORY_BUDGET), "no overflow");
        assert!(memory.take(ANSWER_MEMORY_BUDGET / WEIGHT, ANSWER_MEMORY_BUDGET));
        assert!(!memory.take(1, ANSWER_MEMORY_BUDGET));
        let mut full = AnswerMemory::default();
        assert!(full.take(1, WEIGHT));
        assert!(!full.has_room(WEIGHT), "full: the next answer waits");
    }
}
