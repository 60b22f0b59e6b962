//! Why an object may not change now: the condition reason, a message saying what to do, and
//! the category that decides when it is looked at again. Shared by every plan.

use super::requeue::Category;

/// Why a resource (and so the object declaring it) may not change.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    /// Condition reason.
    pub reason: &'static str,
    /// What and what to do.
    pub message: String,
    /// Requeue category.
    pub category: Category,
}
