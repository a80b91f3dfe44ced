//! The tenant's ledger lock: its `ledger_sequences` row, which holds the last ledger sequence
//! handed out. Ledger writers, closes and payments take it (`ledger::charges::lock_ledger`); a
//! close's serial part sends it pipelined with the reads it guards (`store::credit`).

/// Takes the tenant's ledger lock: the sequence row stays locked until the transaction ends, so
/// ledger writers of one tenant run one at a time and commit in sequence order. Answers the
/// last sequence handed out; no row before the tenant's first ledger write. Kept prepared
/// (Diesel leaves every UPDATE unprepared: a prepare round trip per call, and in a close's
/// pipelined serial step one more wait for the gateway under the lock).
macro_rules! ledger_lock_query {
    ($tenant_id:expr) => {
        $crate::store::prepared::KeepPrepared::keep_prepared(
            diesel::update($crate::store::schema::ledger_sequences::table.find($tenant_id))
                .set(
                    $crate::store::schema::ledger_sequences::last_sequence
                        .eq($crate::store::schema::ledger_sequences::last_sequence),
                )
                .returning($crate::store::schema::ledger_sequences::last_sequence),
        )
    };
}
pub(crate) use ledger_lock_query;
