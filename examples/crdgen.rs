//! Writes `crds/<plural>.yaml` and `docs/reference.md` from the Rust types:
//! `cargo run -q --example crdgen` (then `scripts/render.sh` for the chart's copies).

fn main() -> std::io::Result<()> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/crds");
    std::fs::create_dir_all(dir)?;
    for crd in shipshape::api::crds() {
        let path = format!("{dir}/{}.yaml", crd.spec.names.plural);
        std::fs::write(&path, shipshape::api::crd_yaml(&crd))?;
        println!("wrote {path}");
    }
    let reference = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/reference.md");
    std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/docs"))?;
    std::fs::write(reference, shipshape::api::reference::markdown())?;
    println!("wrote {reference}");
    Ok(())
}
