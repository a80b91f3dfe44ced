//! Stream consumers that run through the whole chaos run, as a credit-control system and a
//! provisioning system would: StreamCharges and StreamServiceActions read from a cursor and,
//! whenever the stream breaks (a kill, a terminated connection), reconnected from the last
//! item processed. What they saw is checked after every round.
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use msp_gateway::proto::v1;
use msp_gateway::proto::v1::ServiceActionStatus;
use tokio::sync::watch;
use tonic::{Status, Streaming};

use super::client::{Api, BACKOFF};
use crate::gateway_process::CALL_TIMEOUT;

/// How long a round may wait for a consumer to see what the round did.
const CATCH_UP_WITHIN: Duration = Duration::from_secs(30);

pub struct Follower<S> {
    what: &'static str,
    state: watch::Receiver<S>,
    reconnects: Arc<AtomicUsize>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl<S: Default + Send + Sync + 'static> Follower<S> {
    /// Follows the stream `open` opens after a cursor; `on` folds each message into the state
    /// and returns the new cursor when the message was an item.
    fn spawn<M, Fut>(
        api: Api,
        what: &'static str,
        open: fn(Api, i64) -> Fut,
        on: fn(&mut S, M) -> Option<i64>,
    ) -> Self
    where
        M: Send + 'static,
        Fut: Future<Output = Result<tonic::Response<Streaming<M>>, Status>> + Send + 'static,
    {
        let (state_tx, state) = watch::channel(S::default());
        let (stop, mut stopped) = watch::channel(false);
        let reconnects = Arc::new(AtomicUsize::new(0));
        let counted = reconnects.clone();
        let task = tokio::spawn(async move {
            let mut cursor = 0;
            loop {
                let opened = tokio::time::timeout(CALL_TIMEOUT, open(api.clone(), cursor))
                    .await
                    .unwrap_or_else(|_| panic!("{what} hung opening"));
                let mut stream = match opened {
                    Ok(stream) => stream.into_inner(),
                    Err(status) => {
                        api.refused(&what, &status);
                        counted.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(BACKOFF).await;
                        continue;
                    }
                };
                loop {
                    tokio::select! {
                        message = stream.message() => match message {
                            Ok(Some(message)) => {
                                let mut next = None;
                                state_tx.send_modify(|state| next = on(state, message));
                                if let Some(next) = next {
                                    cursor = next;
                                }
                            }
                            Ok(None) => break,
                            Err(status) => {
                                api.refused(&what, &status);
                                break;
                            }
                        },
                        _ = stopped.changed() => return,
                    }
                }
                counted.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(BACKOFF).await;
            }
        });
        Follower {
            what,
            state,
            reconnects,
            stop,
            task,
        }
    }

    /// Waits until the state satisfies `done` (a panic of the consumer fails the run here).
    pub async fn until(&mut self, done: impl FnMut(&S) -> bool) {
        let waited = tokio::time::timeout(CATCH_UP_WITHIN, self.state.wait_for(done)).await;
        match waited {
            Ok(Ok(_)) => {}
            // The consumer panicked: its own message says why.
            Ok(Err(_)) => {
                let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
                if let Err(error) = task.await {
                    std::panic::resume_unwind(error.into_panic());
                }
                unreachable!("{} ended", self.what);
            }
            Err(_) => panic!("{} did not catch up within {CATCH_UP_WITHIN:?}", self.what),
        }
    }

    pub fn state(&self) -> watch::Ref<'_, S> {
        self.state.borrow()
    }

    pub fn reconnects(&self) -> usize {
        self.reconnects.load(Ordering::Relaxed)
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The sequences StreamCharges delivered, in order; each must follow the one before.
pub type Sequences = Vec<i64>;

pub fn charges(api: Api) -> Follower<Sequences> {
    Follower::spawn(
        api,
        "StreamCharges",
        |api, after| async move {
            api.charges()
                .stream_charges(v1::StreamChargesRequest {
                    after_sequence: after,
                    ..Default::default()
                })
                .await
        },
        |received: &mut Sequences, message: v1::StreamChargesResponse| {
            let Some(v1::stream_charges_response::Event::Charge(charge)) = message.event else {
                return None;
            };
            let expected = received.last().copied().unwrap_or(0) + 1;
            assert_eq!(
                charge.sequence, expected,
                "StreamCharges skipped or repeated a sequence after {received:?}"
            );
            received.push(charge.sequence);
            Some(charge.sequence)
        },
    )
}

/// Every state StreamServiceActions delivered, by action id: (change sequence, status).
#[derive(Default)]
pub struct ActionStates {
    pub by_id: HashMap<String, Vec<(i64, ServiceActionStatus)>>,
    last_change: i64,
}

pub fn terminal(status: ServiceActionStatus) -> bool {
    matches!(
        status,
        ServiceActionStatus::Succeeded | ServiceActionStatus::Failed
    )
}

impl ActionStates {
    /// Whether the stream has shown action `id` in a terminal status.
    pub fn finished(&self, id: &str) -> bool {
        self.by_id
            .get(id)
            .and_then(|states| states.last())
            .is_some_and(|(_, status)| terminal(*status))
    }
}

pub fn actions(api: Api) -> Follower<ActionStates> {
    Follower::spawn(
        api,
        "StreamServiceActions",
        |api, after| async move {
            api.services()
                .stream_service_actions(v1::StreamServiceActionsRequest {
                    after_sequence: after,
                    customer_ids: vec![],
                })
                .await
        },
        |seen: &mut ActionStates, message: v1::StreamServiceActionsResponse| {
            let Some(v1::stream_service_actions_response::Event::ServiceAction(action)) =
                message.event
            else {
                return None;
            };
            assert!(
                action.change_sequence > seen.last_change,
                "StreamServiceActions went back from change {} to {}",
                seen.last_change,
                action.change_sequence
            );
            seen.last_change = action.change_sequence;
            let states = seen.by_id.entry(action.id.clone()).or_default();
            // An action that reached SUCCEEDED or FAILED never changes again.
            assert!(
                !states.last().is_some_and(|(_, status)| terminal(*status)),
                "action {} changed after it finished: {states:?} then {action:?}",
                action.id
            );
            states.push((action.change_sequence, action.status()));
            Some(action.change_sequence)
        },
    )
}
