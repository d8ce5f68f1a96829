//! Getting the tables out: the terminal report.

pub mod report;
