//! One connection's outgoing queue: the hub thread fills it, the connection task empties it onto
//! the socket. It is bounded in frames (a channel) and in bytes (counted here, the frame being
//! written included), so a peer that stops reading costs the relay at most the bound: past
//! either, the hub gives up on the connection, which is closed with the reason, instead of
//! queueing more.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

/// What the hub thread hands a connection task.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Frame(Vec<u8>),
    Close { code: u16, reason: String },
}

/// What both ends share.
#[derive(Debug, Default)]
struct Shared {
    /// Bytes of frames queued and not yet written (the one being written included).
    bytes: AtomicUsize,
    /// Why the hub gave up on the connection, once it has.
    gave_up: OnceLock<String>,
}

/// A new queue: at most `frames` frames and (unless it holds just one) `bytes` bytes.
pub(crate) fn channel(frames: usize, bytes: usize) -> (Outbox, Queue) {
    let (tx, rx) = mpsc::channel(frames.max(1));
    let shared = Arc::new(Shared::default());
    (Outbox { tx, shared: shared.clone(), frames, bytes }, Queue { rx, shared })
}

/// The hub thread's end.
#[derive(Debug)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<Outgoing>,
    shared: Arc<Shared>,
    frames: usize,
    bytes: usize,
}

/// Why a frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The connection task has ended.
    Gone,
    /// The peer reads too slowly: the queue is past a bound (why).
    TooSlow(String),
}

impl Outbox {
    /// Queues a frame. A frame always fits into an empty queue, so that no message is too large
    /// to send at all.
    pub(crate) fn push(&self, frame: Vec<u8>) -> Result<(), Refused> {
        let len = frame.len();
        let before = self.shared.bytes.fetch_add(len, Ordering::SeqCst);
        if before > 0 && before.saturating_add(len) > self.bytes {
            self.shared.bytes.fetch_sub(len, Ordering::SeqCst);
            return Err(Refused::TooSlow(format!(
                "too slow: more than {} bytes queued for it; read faster or open fewer documents",
                self.bytes
            )));
        }
        self.tx.try_send(Outgoing::Frame(frame)).map_err(|e| {
            self.shared.bytes.fetch_sub(len, Ordering::SeqCst);
            match e {
                mpsc::error::TrySendError::Full(_) => {
                    Refused::TooSlow(format!("too slow: more than {} frames queued for it", self.frames))
                }
                mpsc::error::TrySendError::Closed(_) => Refused::Gone,
            }
        })
    }

    /// Queues a close (after the frames already queued). Best effort: a full queue is already
    /// being given up on.
    pub(crate) fn close(self, code: u16, reason: String) {
        let _ = self.tx.try_send(Outgoing::Close { code, reason });
    }

    /// Gives up on the connection: it gets no more frames, and is closed with `reason` before
    /// the next one it would have written.
    pub(crate) fn give_up(self, reason: String) {
        let _ = self.shared.gave_up.set(reason);
    }
}

/// The connection task's end.
#[derive(Debug)]
pub(crate) struct Queue {
    rx: mpsc::Receiver<Outgoing>,
    shared: Arc<Shared>,
}

impl Queue {
    /// The next thing to send; `None` once the hub has dropped the connection (given up on it,
    /// or stopped).
    pub(crate) async fn recv(&mut self) -> Option<Outgoing> {
        self.rx.recv().await
    }

    /// A frame of `len` bytes has been written (or failed to be): it no longer counts.
    pub(crate) fn written(&self, len: usize) {
        self.shared.bytes.fetch_sub(len, Ordering::SeqCst);
    }

    /// Why the hub gave up on the connection, if it has.
    pub(crate) fn given_up(&self) -> Option<&str> {
        self.shared.gave_up.get().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_in_bytes_with_room_for_one_frame_of_any_size() {
        let (outbox, queue) = channel(100, 10);
        assert_eq!(outbox.push(vec![0; 25]), Ok(()), "a frame larger than the bound fits an empty queue");
        let refused = outbox.push(vec![0; 1]);
        assert!(matches!(&refused, Err(Refused::TooSlow(r)) if r.contains("more than 10 bytes")), "{refused:?}");
        queue.written(25);
        assert_eq!(outbox.push(vec![0; 6]), Ok(()));
        assert_eq!(outbox.push(vec![0; 4]), Ok(()), "exactly the bound");
        assert!(outbox.push(vec![0; 1]).is_err());
        assert_eq!(queue.given_up(), None);
        outbox.give_up("too slow".into());
        assert_eq!(queue.given_up(), Some("too slow"));
    }

    #[test]
    fn bounded_in_frames_and_gone_when_the_task_is() {
        let (outbox, queue) = channel(2, 1 << 20);
        assert_eq!(outbox.push(vec![1]), Ok(()));
        assert_eq!(outbox.push(vec![2]), Ok(()));
        let refused = outbox.push(vec![3]);
        assert!(matches!(&refused, Err(Refused::TooSlow(r)) if r.contains("more than 2 frames")), "{refused:?}");
        // A refused frame does not count.
        queue.written(2);
        assert_eq!(queue.shared.bytes.load(Ordering::SeqCst), 0);
        drop(queue);
        assert_eq!(outbox.push(vec![4]), Err(Refused::Gone));
    }
}
