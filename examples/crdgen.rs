//! Writes `crds/<plural>.yaml` from the Rust types: `cargo run -q --example crdgen`.

fn main() -> std::io::Result<()> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/crds");
    std::fs::create_dir_all(dir)?;
    for crd in shipshape::api::crds() {
        let path = format!("{dir}/{}.yaml", crd.spec.names.plural);
        std::fs::write(&path, shipshape::api::crd_yaml(&crd))?;
        println!("wrote {path}");
    }
    Ok(())
}
