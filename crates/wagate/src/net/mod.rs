//! Network plumbing shared by the parts that reach out: webhook delivery and media
//! fetches go through [`outbound`], never through a client of their own making.

pub mod outbound;
