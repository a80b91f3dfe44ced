#![no_main]
use libfuzzer_sys::fuzz_target;

// See msp_gateway::fuzz_entry::page_token.
fuzz_target!(|data: &[u8]| {
    let _ = msp_gateway::fuzz_entry::page_token(data);
});
