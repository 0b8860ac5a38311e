//! The runner's one integration-test binary.
