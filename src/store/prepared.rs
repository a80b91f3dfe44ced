//! Raw SQL the connection keeps prepared.
//!
//! Diesel marks every `sql_query` unsafe to cache, since its text could carry values. Uncached,
//! diesel-async prepares the statement on each call, a round trip of its own before the one
//! that runs it, and PostgreSQL parses and plans it again every time. The month close ran
//! seven such statements per invoice. [`KeepPrepared::keep_prepared`] marks a statement whose
//! text is one of a fixed set (values only in binds), so the connection's statement cache keeps
//! it, keyed by its text and bind types, as for Diesel's own query builder; PostgreSQL then
//! plans it afresh only while a plan for its binds beats a generic one. That cache has no
//! bound: never use this for a text built from values.
use diesel::QueryResult;
use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};

/// A statement the connection may keep prepared (see the module).
#[derive(Debug, Clone)]
pub struct Prepared<Q>(Q);

pub trait KeepPrepared: Sized {
    /// This statement, kept prepared: only for a text that carries no values.
    fn keep_prepared(self) -> Prepared<Self> {
        Prepared(self)
    }
}

impl<Q> KeepPrepared for Q {}

// No static id: the cache keys the statement by its text.
impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

impl<Q: QueryFragment<DB>, DB: Backend> QueryFragment<DB> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}
