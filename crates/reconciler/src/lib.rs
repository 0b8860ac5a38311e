//! Pure decisions: which in-progress calls to close, when they ended and why.
#![warn(missing_docs)]
