//! What a connection has done and when, shared by its socket wrapper, its requests and
//! responses, and the watchdog that ends it when the client stops making progress.

use crate::limits::{ServerLimits, too_slow};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The HTTP/2 client preface; a client that sends part of it and stops has to be cut, since
/// the protocol detection waits for all of it.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// `preface` once the bytes read differ from the preface or hold all of it.
const PREFACE_DECIDED: u8 = u8::MAX;
/// "Not set" in a field of milliseconds-plus-one.
const UNSET: u64 = 0;

/// Why the watchdog ends a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Verdict {
    #[error("sent nothing after the TLS handshake")]
    Silent,
    #[error("sent part of the HTTP/2 preface and stopped")]
    PartialPreface,
    #[error("stopped reading: a write stayed blocked past the send timeout")]
    WriteStalled,
    #[error("stopped taking a response past the send timeout")]
    ResponseStalled,
    #[error("took a response below the minimum send rate")]
    ResponseTooSlow,
    #[error("idle: no request in flight past the idle timeout")]
    Idle,
}

/// How far the server got with one response body.
#[derive(Default)]
struct Sending {
    /// When the body handed out its last chunk, while the connection has not come back for
    /// the next: the time the server is waiting on the client.
    awaiting_since: Option<Instant>,
    /// The time spent waiting on the client before `awaiting_since`.
    waited: Duration,
    bytes: u64,
}

pub(crate) struct Progress {
    opened: Instant,
    bytes_read: AtomicU64,
    /// How many leading bytes matched the HTTP/2 preface, or `PREFACE_DECIDED`.
    preface: AtomicU8,
    /// Milliseconds since `opened` + 1 when a write to the socket blocked, or `UNSET`.
    write_blocked_since: AtomicU64,
    /// Requests in the service or with a response body still being sent.
    active: AtomicUsize,
    /// Milliseconds since `opened` when `active` last fell to zero.
    idle_since: AtomicU64,
    sending: Mutex<HashMap<u64, Sending>>,
    next_response: AtomicU64,
}

impl Progress {
    pub(crate) fn new() -> Arc<Progress> {
        Arc::new(Progress {
            opened: Instant::now(),
            bytes_read: AtomicU64::new(0),
            preface: AtomicU8::new(0),
            write_blocked_since: AtomicU64::new(UNSET),
            active: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            sending: Mutex::default(),
            next_response: AtomicU64::new(0),
        })
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.opened).as_millis()).unwrap_or(u64::MAX)
    }

    /// The time from `millis` (since `opened`) to `now`.
    fn since(&self, millis: u64, now: Instant) -> Duration {
        now.saturating_duration_since(self.opened)
            .saturating_sub(Duration::from_millis(millis))
    }

    fn on_read(&self, bytes: &[u8]) {
        self.bytes_read
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let matched = self.preface.load(Ordering::Relaxed);
        if matched == PREFACE_DECIDED || bytes.is_empty() {
            return;
        }
        let start = usize::from(matched);
        let take = bytes.len().min(H2_PREFACE.len() - start);
        let next = if bytes[..take] != H2_PREFACE[start..start + take]
            || start + take == H2_PREFACE.len()
        {
            PREFACE_DECIDED
        } else {
            // Below 24, so it fits.
            (start + take) as u8
        };
        self.preface.store(next, Ordering::Relaxed);
    }

    fn on_write(&self, blocked: bool) {
        if blocked {
            let now = self.millis(Instant::now()) + 1;
            // Only the first block of a run counts: the time is how long it has lasted.
            let _ = self.write_blocked_since.compare_exchange(
                UNSET,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        } else {
            self.write_blocked_since.store(UNSET, Ordering::Relaxed);
        }
    }

    /// A request entered the service; it counts until the guard (moved into its response
    /// body) is dropped.
    pub(crate) fn begin_request(self: &Arc<Self>) -> Active {
        self.active.fetch_add(1, Ordering::AcqRel);
        Active(self.clone())
    }

    /// Starts tracking a response body; returns its id.
    pub(crate) fn begin_response(&self) -> u64 {
        let id = self.next_response.fetch_add(1, Ordering::Relaxed);
        self.sending().insert(id, Sending::default());
        id
    }

    /// The connection came back for more of response `id`.
    pub(crate) fn response_polled(&self, id: u64) {
        let now = Instant::now();
        if let Some(sending) = self.sending().get_mut(&id)
            && let Some(since) = sending.awaiting_since.take()
        {
            sending.waited += now.saturating_duration_since(since);
        }
    }

    /// Response `id` handed out `bytes`; the server now waits for the client to take them.
    pub(crate) fn response_yielded(&self, id: u64, bytes: u64) {
        if let Some(sending) = self.sending().get_mut(&id) {
            sending.bytes += bytes;
            sending.awaiting_since = Some(Instant::now());
        }
    }

    pub(crate) fn end_response(&self, id: u64) {
        self.sending().remove(&id);
    }

    fn sending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Sending>> {
        self.sending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether, and why, the connection must end now.
    pub(crate) fn verdict(&self, limits: &ServerLimits, now: Instant) -> Option<Verdict> {
        let age = now.saturating_duration_since(self.opened);
        if self.bytes_read.load(Ordering::Relaxed) == 0 {
            return (age > limits.first_byte_timeout).then_some(Verdict::Silent);
        }
        if self.preface.load(Ordering::Relaxed) != PREFACE_DECIDED && age > limits.header_timeout {
            return Some(Verdict::PartialPreface);
        }
        let blocked = self.write_blocked_since.load(Ordering::Relaxed);
        if blocked != UNSET && self.since(blocked - 1, now) > limits.send_timeout {
            return Some(Verdict::WriteStalled);
        }
        if let Some(verdict) = self.responses_verdict(limits, now) {
            return Some(verdict);
        }
        let idle = self.active.load(Ordering::Acquire) == 0
            && self.since(self.idle_since.load(Ordering::Acquire), now) > limits.idle_timeout;
        idle.then_some(Verdict::Idle)
    }

    fn responses_verdict(&self, limits: &ServerLimits, now: Instant) -> Option<Verdict> {
        for sending in self.sending().values() {
            let waiting = sending
                .awaiting_since
                .map(|since| now.saturating_duration_since(since));
            if waiting.is_some_and(|waiting| waiting > limits.send_timeout) {
                return Some(Verdict::ResponseStalled);
            }
            let waited = sending.waited + waiting.unwrap_or_default();
            if too_slow(
                sending.bytes,
                waited,
                limits.rate_grace,
                limits.min_send_rate,
            ) {
                return Some(Verdict::ResponseTooSlow);
            }
        }
        None
    }
}

/// A request in flight on its connection (the connection is not idle while one exists).
pub(crate) struct Active(Arc<Progress>);

impl Drop for Active {
    fn drop(&mut self) {
        let progress = &self.0;
        // The idle time is set before the count falls, so the watchdog never sees a zero
        // count with a stale idle time.
        progress
            .idle_since
            .store(progress.millis(Instant::now()), Ordering::Release);
        progress.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The connection's socket, reporting each read and write to its `Progress`.
pub(crate) struct Tracked<T> {
    inner: T,
    progress: Arc<Progress>,
}

impl<T> Tracked<T> {
    pub(crate) fn new(inner: T, progress: Arc<Progress>) -> Tracked<T> {
        Tracked { inner, progress }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.progress.on_read(&buf.filled()[before..]);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress.on_write(polled.is_pending());
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress.on_write(polled.is_pending());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress.on_write(polled.is_pending());
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.progress.on_write(polled.is_pending());
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ServerLimits {
        ServerLimits {
            first_byte_timeout: Duration::from_secs(1),
            header_timeout: Duration::from_secs(2),
            send_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(4),
            rate_grace: Duration::from_secs(5),
            min_send_rate: 1000,
            ..ServerLimits::default()
        }
    }

    fn after(progress: &Progress, millis: u64) -> Instant {
        progress.opened + Duration::from_millis(millis)
    }

    #[test]
    fn a_silent_connection_is_ended_after_the_first_byte_timeout() {
        let progress = Progress::new();
        assert_eq!(progress.verdict(&limits(), after(&progress, 900)), None);
        assert_eq!(
            progress.verdict(&limits(), after(&progress, 1100)),
            Some(Verdict::Silent)
        );
    }

    #[test]
    fn a_partial_preface_is_ended_after_the_header_timeout() {
        let progress = Progress::new();
        progress.on_read(b"PRI * HTTP/2.0\r\n");
        assert_eq!(progress.verdict(&limits(), after(&progress, 1900)), None);
        assert_eq!(
            progress.verdict(&limits(), after(&progress, 2100)),
            Some(Verdict::PartialPreface)
        );
        // The rest in pieces completes it.
        progress.on_read(b"\r\nSM");
        progress.on_read(b"\r\n\r\nextra");
        assert_eq!(progress.verdict(&limits(), after(&progress, 2100)), None);
    }

    #[test]
    fn http1_bytes_decide_the_preface_at_once() {
        let progress = Progress::new();
        progress.on_read(b"GE");
        assert_eq!(progress.preface.load(Ordering::Relaxed), PREFACE_DECIDED);
        // Then only idleness applies.
        assert_eq!(progress.verdict(&limits(), after(&progress, 3900)), None);
        assert_eq!(
            progress.verdict(&limits(), after(&progress, 4100)),
            Some(Verdict::Idle)
        );
    }

    #[test]
    fn a_blocked_write_ends_the_connection_after_the_send_timeout() {
        let progress = Progress::new();
        progress.on_read(b"GET");
        let _request = progress.begin_request();
        progress.on_write(true);
        progress.on_write(true);
        let blocked_at = progress.write_blocked_since.load(Ordering::Relaxed) - 1;
        let at = |millis: u64| after(&progress, blocked_at + millis);
        assert_eq!(progress.verdict(&limits(), at(2900)), None);
        assert_eq!(
            progress.verdict(&limits(), at(3100)),
            Some(Verdict::WriteStalled)
        );
        progress.on_write(false);
        assert_eq!(progress.verdict(&limits(), at(3100)), None);
    }

    #[test]
    fn a_response_not_taken_or_taken_too_slowly_ends_the_connection() {
        let progress = Progress::new();
        progress.on_read(b"GET");
        let _request = progress.begin_request();
        let id = progress.begin_response();
        progress.response_polled(id);
        progress.response_yielded(id, 100);
        let now = Instant::now();
        assert_eq!(
            progress.verdict(&limits(), now + Duration::from_millis(2900)),
            None
        );
        assert_eq!(
            progress.verdict(&limits(), now + Duration::from_millis(3100)),
            Some(Verdict::ResponseStalled)
        );
        // Taken in time, but 100 bytes in over 5 s of waiting is below 1000 bytes/s.
        {
            let mut sending = progress.sending();
            let entry = sending.get_mut(&id).unwrap();
            entry.awaiting_since = None;
            entry.waited = Duration::from_secs(6);
        }
        assert_eq!(
            progress.verdict(&limits(), Instant::now()),
            Some(Verdict::ResponseTooSlow)
        );
        progress.end_response(id);
        assert_eq!(progress.verdict(&limits(), Instant::now()), None);
    }

    #[test]
    fn a_connection_with_a_request_in_flight_is_not_idle() {
        let progress = Progress::new();
        progress.on_read(b"GET");
        let request = progress.begin_request();
        assert_eq!(progress.verdict(&limits(), after(&progress, 60_000)), None);
        drop(request);
        let now = Instant::now();
        assert_eq!(progress.verdict(&limits(), now), None);
        assert_eq!(
            progress.verdict(&limits(), now + Duration::from_secs(5)),
            Some(Verdict::Idle)
        );
    }
}
