//! The test broker and its typed client live in `hoistd::testing`, which the
//! client's tests share.

pub use hoistd::testing::*;
