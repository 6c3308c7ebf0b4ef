//! Group commit for writes (OAuth tokens, webhook attempts). Requests hand their write to one task, which takes everything that
//! queued up while the previous batch was committing and writes it in one transaction. Each caller
//! still gets its own answer only after its write is durable; nothing is acknowledged early.

use std::future::Future;

use gatehouse_store::StoreError;
use tokio::sync::{mpsc, oneshot};

type Reply<R> = oneshot::Sender<Result<R, StoreError>>;

/// A queue of writes of type `T`, each answered with an `R`.
#[derive(Debug)]
pub struct Batcher<T, R> {
    tx: mpsc::Sender<(T, Reply<R>)>,
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// `write` gets a batch of at most `max` items and must answer one `R` per item, in order.
    pub fn new<F, Fut>(max: usize, write: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<R>, StoreError>> + Send,
    {
        let (tx, mut rx) = mpsc::channel::<(T, Reply<R>)>(max * 4);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut items = vec![first.0];
                let mut replies = vec![first.1];
                while items.len() < max {
                    match rx.try_recv() {
                        Ok((t, r)) => {
                            items.push(t);
                            replies.push(r);
                        }
                        Err(_) => break,
                    }
                }
                match write(items).await {
                    Ok(results) if results.len() == replies.len() => {
                        for (r, reply) in results.into_iter().zip(replies) {
                            let _ = reply.send(Ok(r));
                        }
                    }
                    Ok(_) => {
                        for reply in replies {
                            let _ =
                                reply.send(Err(StoreError::Other("batch answered the wrong number of items".into())));
                        }
                    }
                    Err(e) => {
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        Self { tx }
    }

    /// Queues one write and waits for its batch to commit.
    pub async fn submit(&self, item: T) -> Result<R, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((item, reply))
            .await
            .map_err(|_| StoreError::Unavailable("the token writer has stopped".into()))?;
        answer.await.map_err(|_| StoreError::Unavailable("the token writer has stopped".into()))?
    }
}
