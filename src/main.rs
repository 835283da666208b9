fn main() {
    println!("tanium-operator {}", env!("CARGO_PKG_VERSION"));
}
