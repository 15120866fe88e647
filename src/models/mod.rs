//! Models, each written once against [`crate::tensor`].

pub mod clip;
