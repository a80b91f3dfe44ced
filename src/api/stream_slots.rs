//! A cap on the server streams one tenant holds open (`max_streams_per_tenant`), so that one BSS
//! client opening streams in a loop cannot exhaust the gateway's memory and database polling for
//! every other tenant. A stream holds its slot until it ends or its client goes away.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;

use crate::domain::error::Error;

/// What a refused caller is told to wait before opening again: long enough for a leaked
/// stream's connection to be noticed by keepalive or a consumer to close one.
const RETRY_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct StreamSlots {
    per_tenant: usize,
    open: Mutex<HashMap<String, usize>>,
}

/// One open stream's slot; freed on drop.
#[derive(Debug)]
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    tenant_id: String,
}

impl StreamSlots {
    /// At most `per_tenant` open streams per tenant (0: no cap).
    pub fn new(per_tenant: usize) -> Arc<Self> {
        Arc::new(StreamSlots {
            per_tenant,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more of the tenant's streams, or RESOURCE_EXHAUSTED at the cap.
    pub fn take(self: &Arc<Self>, tenant_id: &str) -> Result<StreamSlot, Error> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let held = open.entry(tenant_id.to_string()).or_insert(0);
        if self.per_tenant > 0 && *held >= self.per_tenant {
            return Err(Error::ResourceExhausted {
                limit: "max_streams_per_tenant",
                description: format!(
                    "this tenant already has {held} streams open, the most the gateway allows; \
                     close one (or let a dead consumer's connection time out) and open again"
                ),
                retry_after: RETRY_AFTER,
            });
        }
        *held += 1;
        Ok(StreamSlot {
            slots: self.clone(),
            tenant_id: tenant_id.to_string(),
        })
    }

    /// The tenant's open streams.
    pub fn held(&self, tenant_id: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(tenant_id).copied().unwrap_or(0)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = open.get_mut(&self.tenant_id) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                open.remove(&self.tenant_id);
            }
        }
    }
}

/// `stream`, holding `slot` for as long as it lives.
pub fn holding<T: Send + 'static>(
    stream: BoxStream<'static, T>,
    slot: StreamSlot,
) -> BoxStream<'static, T> {
    stream
        .map(move |item| {
            let _held = &slot;
            item
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_holds_at_most_its_cap_and_dropping_frees_a_slot() {
        let slots = StreamSlots::new(2);
        let a = slots.take("t1").unwrap();
        let _b = slots.take("t1").unwrap();
        let refused = slots.take("t1").unwrap_err();
        assert!(
            matches!(
                refused,
                Error::ResourceExhausted {
                    limit: "max_streams_per_tenant",
                    ..
                }
            ),
            "{refused:?}"
        );
        // Another tenant is not affected.
        let _other = slots.take("t2").unwrap();
        drop(a);
        assert_eq!(slots.held("t1"), 1);
        let _c = slots.take("t1").unwrap();
        assert_eq!(slots.held("t1"), 2);
    }

    #[test]
    fn zero_means_no_cap() {
        let slots = StreamSlots::new(0);
        let held: Vec<_> = (0..100).map(|_| slots.take("t").unwrap()).collect();
        assert_eq!(slots.held("t"), held.len());
        drop(held);
        assert_eq!(slots.held("t"), 0);
    }
}
