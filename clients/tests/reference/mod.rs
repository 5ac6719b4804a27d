//! The differential test's parts: the documented rules ([`model`]), the seeded calls
//! ([`generator`]) and the comparison of two answers ([`compare`]).

pub(crate) mod compare;
pub(crate) mod generator;
pub(crate) mod model;
