//! Generates Rust code from the protobuf definitions with protox, a pure-Rust protobuf
//! compiler, so a plain `cargo build` needs no `protoc` on the machine:
//!
//! * `proto/podbgp/v1/*.proto`: podbgp's own gRPC API, client and server;
//! * `proto/etcd/**.proto`: the subset of etcd v3's API that `datastore::etcd` uses, client
//!   only (packages `etcdserverpb` and `mvccpb`, as in etcd).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let api = ["proto/podbgp/v1/speaker.proto"];
    let etcd = [
        "proto/etcd/etcdserverpb/rpc.proto",
        "proto/etcd/mvccpb/kv.proto",
    ];
    for f in api.iter().chain(&etcd) {
        println!("cargo:rerun-if-changed={f}");
    }

    let fds = protox::compile(api, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;

    let fds = protox::compile(etcd, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
