//! The crate's in-process fixture now lives in [`crate::testing`] (one for the unit and
//! the integration tests); this path stays for the tests written against it.

// Unused here once every test imports `crate::testing`.
#[allow(unused_imports)]
pub(crate) use crate::testing::*;
