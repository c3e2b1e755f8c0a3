//! Generates the gRPC API (`proto/podbgp/v1/*.proto`) with protox, a pure-Rust protobuf
//! compiler, so a plain `cargo build` needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/podbgp/v1/speaker.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
