//! mailroute's operator: the kube-rs controller that compiles the four
//! kinds into published tables and honest status (see [`controller`]).

pub mod controller;
