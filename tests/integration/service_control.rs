//! Service-control adapters driven directly (not through the gateway server): AWS Organizations
//! through the real SDK against moto, Partner Center over TLS against the emulator, and the
//! simulator. The states the emulators skip are scripted: moto's account creation is SUCCEEDED
//! at once and it has no closure quota, so the AWS tests put the fault-injecting proxy in front.
pub mod aws_organizations;
pub mod partner_center;
