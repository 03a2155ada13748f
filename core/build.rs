// The migrations are embedded at compile time (`refinery::embed_migrations!` in src/db.rs):
// rebuild when one is added or changed.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
