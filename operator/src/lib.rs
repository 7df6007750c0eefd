//! mailroute's operator: the kube-rs controller that compiles the four
//! kinds into published tables and honest status (see [`controller`]), and
//! [`cleanup`], which removes what it created when it is uninstalled.

pub mod cleanup;
pub mod controller;
