//! The migrations are embedded by `sqlx::migrate!`, a macro cargo cannot see read files:
//! without this, a new migration file alone would not rebuild the crate, and a cached
//! build would run without it (sqlx's own advice).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=migrations-sqlite");
}
