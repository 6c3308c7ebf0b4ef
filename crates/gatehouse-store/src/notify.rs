//! The pushed change feed on PostgreSQL (SPEC §16): a trigger on `key_changes` (migration 0019)
//! sends `NOTIFY gatehouse_key_changes` when a transaction that wrote to the feed commits, and every
//! store keeps one listening connection that turns those notifications into ticks of a watch channel.
//! A cache that waits on the channel reads the feed as soon as another node commits, instead of at its
//! next poll.
//!
//! Notifications are a hint, never the feed itself: they carry no hashes, a notification sent while
//! the listening connection is down is lost (so every reconnect ticks once, to catch up), and the
//! caches keep polling as the backstop. A lost notification costs latency, never correctness.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::watch;

/// The channel the 0019 trigger notifies.
pub(crate) const CHANNEL: &str = "gatehouse_key_changes";

/// How long to wait before listening again after the connection failed.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// Starts listening on a connection of its own (from a one-connection pool that is returned, so
/// `close` can end it). The channel ticks once per notification and once per (re)connect; the task
/// ends when every receiver is gone or the pool is closed.
pub(crate) fn listen(connect: PgConnectOptions) -> (PgPool, watch::Receiver<u64>) {
    let pool =
        PgPoolOptions::new().max_connections(1).acquire_timeout(Duration::from_secs(2)).connect_lazy_with(connect);
    let (tx, rx) = watch::channel(0u64);
    let listener_pool = pool.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tx.closed() => {}
            _ = run(&listener_pool, &tx) => {}
        }
    });
    (pool, rx)
}

async fn run(pool: &PgPool, tx: &watch::Sender<u64>) {
    let mut failing = false;
    while !pool.is_closed() {
        if let Err(e) = listen_once(pool, tx, &mut failing).await {
            if !failing {
                tracing::warn!(error = %e, "change-feed notifications lost; caches poll until they are back");
                failing = true;
            }
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

/// Listens until the connection fails. Ticks once when listening starts, then per notification.
async fn listen_once(pool: &PgPool, tx: &watch::Sender<u64>, failing: &mut bool) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    if std::mem::take(failing) {
        tracing::info!("change-feed notifications resume");
    }
    tx.send_modify(|n| *n += 1);
    loop {
        match listener.try_recv().await? {
            Some(_) => tx.send_modify(|n| *n += 1),
            None => return Ok(()), // connection lost; listen again (and tick) after the delay
        }
    }
}
