//! Code generated from `proto/` by build.rs.
#![allow(clippy::all, clippy::pedantic)]

pub mod msp {
    pub mod gateway {
        pub mod v1 {
            tonic::include_proto!("msp.gateway.v1");
        }
    }
}

pub use msp::gateway::v1;

/// The file descriptor set that gRPC reflection serves.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("msp_gateway_descriptor");
