//! Leases: work that one process at a time should do (a projection, the
//! waitlist's offering loop) holds a session advisory lock on a connection
//! of its own; the lock goes with the session, so a process that dies
//! (`kill -9` included) hands the work on as soon as its connection closes.

use sqlx::{Connection, PgConnection};

use crate::Store;

/// A held lease: its own connection, holding the lock.
#[derive(Debug)]
pub struct Lease(PgConnection);

impl Lease {
    /// Checks the lease's connection: an error means the lease is lost
    /// (the session, and its lock, may be gone).
    pub async fn check(&mut self) -> Result<(), sqlx::Error> {
        sqlx::query_scalar!(r#"select 1 as "alive!""#)
            .fetch_one(&mut self.0)
            .await?;
        Ok(())
    }

    /// Gives the lease up (closing its connection ends the lock).
    pub async fn release(self) {
        let _ = self.0.close().await;
    }
}

impl Store {
    /// Takes lease `name` of `class` on a new connection, or `None` when
    /// another session holds it. Keep it while working, and check it now
    /// and then: a lost connection is a lost lease.
    pub async fn try_lease(&self, class: i32, name: &str) -> Result<Option<Lease>, sqlx::Error> {
        let options = self.sessions().connect_options();
        let mut conn = PgConnection::connect_with(&options).await?;
        let taken = sqlx::query_scalar!(
            r#"select pg_try_advisory_lock($1, hashtext($2)) as "taken!""#,
            class,
            name,
        )
        .fetch_one(&mut conn)
        .await?;
        if taken {
            Ok(Some(Lease(conn)))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }
}
