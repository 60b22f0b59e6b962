fn main() {
    print!("{}", shipshape::api::crds_yaml());
}
