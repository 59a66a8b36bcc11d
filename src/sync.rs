//! Concurrency primitives, from `loom` under `cfg(loom)` so the lock-free
//! protocols can be model-checked with the same code that runs.

#[cfg(loom)]
pub use loom::sync::Arc;
#[cfg(loom)]
pub use loom::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
};

#[cfg(not(loom))]
pub use std::sync::Arc;
#[cfg(not(loom))]
pub use std::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
};

pub use crossbeam::utils::CachePadded;

/// An `UnsafeCell` with loom's closure API on both builds, so loom can
/// track every access.
#[derive(Debug, Default)]
pub struct UnsafeCell<T>(
    #[cfg(loom)] loom::cell::UnsafeCell<T>,
    #[cfg(not(loom))] std::cell::UnsafeCell<T>,
);

impl<T> UnsafeCell<T> {
    pub fn new(v: T) -> UnsafeCell<T> {
        #[cfg(loom)]
        return UnsafeCell(loom::cell::UnsafeCell::new(v));
        #[cfg(not(loom))]
        return UnsafeCell(std::cell::UnsafeCell::new(v));
    }

    /// Runs `f` with a mutable pointer to the contents.
    ///
    /// The caller is responsible for exclusivity, as with `get()`.
    #[inline]
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        #[cfg(loom)]
        return self.0.with_mut(f);
        #[cfg(not(loom))]
        return f(self.0.get());
    }

    /// Runs `f` with a shared pointer to the contents (a read loom tracks).
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        #[cfg(loom)]
        return self.0.with(f);
        #[cfg(not(loom))]
        return f(self.0.get());
    }
}
