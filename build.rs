//! Compiles `proto/` into the tonic server and client code, plus the file descriptor set that
//! gRPC reflection serves. protoc comes from a crate, so a fresh machine needs no system install.
use std::path::PathBuf;

const PROTO_ROOT: &str = "proto";
const PROTOS: &[&str] = &[
    "proto/msp/gateway/v1/common.proto",
    "proto/msp/gateway/v1/tenant.proto",
    "proto/msp/gateway/v1/partner_account.proto",
    "proto/msp/gateway/v1/charges.proto",
    "proto/msp/gateway/v1/customer.proto",
    "proto/msp/gateway/v1/pricing.proto",
    "proto/msp/gateway/v1/usage.proto",
    "proto/msp/gateway/v1/credit.proto",
    "proto/msp/gateway/v1/invoice.proto",
    "proto/msp/gateway/v1/service_management.proto",
    "proto/msp/gateway/v1/helpdesk.proto",
    "proto/msp/gateway/v1/catalog.proto",
    "proto/msp/gateway/v1/subscription.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };

    // tonic-prost-build no longer emits these for every file.
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    // `embed_migrations!` reads the migration directories at compile time; without this a new
    // migration directory is not embedded until something else rebuilds the crate.
    println!("cargo:rerun-if-changed=migrations");

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("msp_gateway_descriptor.bin"))
        .compile_protos(PROTOS, &[PROTO_ROOT])?;
    Ok(())
}
