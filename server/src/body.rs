//! Request and response bodies that account for the client's progress.
//!
//! A request body fails with [`BodyTimeout`] when a read brings nothing within the read
//! timeout or the average rate falls below the minimum; the handler sees the error (through
//! `axum::Error`, see [`body_timeout`]) and answers 408. A response body reports each chunk
//! it hands out to the connection's watchdog, which ends the connection when the client stops
//! taking them.

use crate::limits::{ServerLimits, too_slow};
use crate::progress::{Active, Progress};
use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn StdError + Send + Sync>;

/// A request body that stalled or crawled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyTimeout {
    #[error("the request body stalled: nothing arrived for {}s; send the body without pauses", .0.as_secs_f32())]
    Stalled(Duration),
    #[error(
        "the request body arrived below the server's minimum of {0} bytes/s; retry over a faster link"
    )]
    TooSlow(u64),
}

/// The [`BodyTimeout`] behind a body error a handler got, if that is what it is.
pub fn body_timeout(error: &(dyn StdError + 'static)) -> Option<BodyTimeout> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(timeout) = error.downcast_ref::<BodyTimeout>() {
            return Some(*timeout);
        }
        current = error.source();
    }
    None
}

/// A request body with a deadline for each read and a minimum average rate.
pub(crate) struct RequestBody<B> {
    inner: B,
    read_timeout: Duration,
    min_rate: u64,
    grace: Duration,
    /// When the handler first asked for data.
    started: Option<Instant>,
    /// Since when the handler has been waiting for data it asked for. Only this time counts
    /// against the read timeout: data that is already there when the handler comes back for
    /// it arrived in time, however busy the server was.
    waiting_since: Option<Instant>,
    bytes: u64,
    /// Fires at the earlier of the read deadline and the moment the rate would fall below
    /// the minimum if nothing more arrives; made on the first wait, so bodies that are
    /// already buffered (or empty) cost no timer.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> RequestBody<B> {
    pub(crate) fn new(inner: B, limits: &ServerLimits) -> RequestBody<B> {
        RequestBody {
            inner,
            read_timeout: limits.body_read_timeout,
            min_rate: limits.min_body_rate,
            grace: limits.rate_grace,
            started: None,
            waiting_since: None,
            bytes: 0,
            timer: None,
        }
    }

    fn deadline(&self, started: Instant, waiting_since: Instant) -> Instant {
        let read = waiting_since + self.read_timeout;
        if self.min_rate == 0 {
            return read;
        }
        // The rate first falls below the minimum at bytes / rate seconds, and is judged from
        // the grace on.
        let rate_ok_for = Duration::try_from_secs_f64(self.bytes as f64 / self.min_rate as f64)
            .unwrap_or(Duration::MAX)
            .max(self.grace)
            .saturating_add(Duration::from_millis(1));
        started
            .checked_add(rate_ok_for)
            .map_or(read, |rate| read.min(rate))
    }

    fn check(&self, started: Instant, now: Instant) -> Result<(), BodyTimeout> {
        let waited = self
            .waiting_since
            .map(|since| now.saturating_duration_since(since));
        if waited.is_some_and(|waited| waited >= self.read_timeout) {
            return Err(BodyTimeout::Stalled(self.read_timeout));
        }
        let elapsed = now.saturating_duration_since(started);
        if too_slow(self.bytes, elapsed, self.grace, self.min_rate) {
            return Err(BodyTimeout::TooSlow(self.min_rate));
        }
        Ok(())
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        // The rate is measured from when the handler starts reading, not from when the request
        // arrived: time spent authenticating is not the client's.
        let started = *this.started.get_or_insert_with(Instant::now);
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                    let now = Instant::now();
                    let too_slow = too_slow(this.bytes, now - started, this.grace, this.min_rate);
                    if too_slow {
                        return Poll::Ready(Some(Err(BodyTimeout::TooSlow(this.min_rate).into())));
                    }
                }
                this.waiting_since = None;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let waiting_since = *this.waiting_since.get_or_insert_with(Instant::now);
                let deadline = this.deadline(started, waiting_since);
                let mut timer = this
                    .timer
                    .take()
                    .unwrap_or_else(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                let fired = timer.as_mut().poll(cx).is_ready();
                this.timer = Some(timer);
                if !fired {
                    return Poll::Pending;
                }
                match this.check(started, Instant::now()) {
                    Err(timeout) => Poll::Ready(Some(Err(timeout.into()))),
                    // Not yet (the bound moved since the timer was set): poll again, which
                    // sets the timer to the new bound.
                    Ok(()) => {
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body whose chunks the connection's watchdog sees handed out and taken.
pub(crate) struct SendBody<B> {
    inner: B,
    id: u64,
    progress: Arc<Progress>,
    _active: Active,
}

impl<B> SendBody<B> {
    pub(crate) fn new(inner: B, progress: Arc<Progress>, active: Active) -> SendBody<B> {
        let id = progress.begin_response();
        SendBody {
            inner,
            id,
            progress,
            _active: active,
        }
    }
}

impl<B> Drop for SendBody<B> {
    fn drop(&mut self) {
        self.progress.end_response(self.id);
    }
}

impl<B> Body for SendBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        this.progress.response_polled(this.id);
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let bytes = frame.data_ref().map_or(0, |data| data.len() as u64);
                this.progress.response_yielded(this.id, bytes);
            }
            Poll::Ready(_) => this.progress.end_response(this.id),
            // The body itself is not ready: not the client's doing.
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn limits(read: u64, rate: u64, grace: u64) -> ServerLimits {
        ServerLimits {
            body_read_timeout: Duration::from_millis(read),
            min_body_rate: rate,
            rate_grace: Duration::from_millis(grace),
            ..ServerLimits::default()
        }
    }

    /// A body fed by hand through a channel.
    struct Fed(tokio::sync::mpsc::Receiver<Bytes>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
        }
    }

    fn channel() -> (tokio::sync::mpsc::Sender<Bytes>, Fed) {
        let (sender, receiver) = tokio::sync::mpsc::channel(8);
        (sender, Fed(receiver))
    }

    #[tokio::test]
    async fn a_stalled_body_fails_after_the_read_timeout() {
        let (sender, body) = channel();
        let mut body = RequestBody::new(body, &limits(500, 0, 100));
        sender.send(Bytes::from_static(b"abc")).await.unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        let began = Instant::now();
        let error = body.frame().await.unwrap().unwrap_err();
        assert_eq!(
            body_timeout(error.as_ref()),
            Some(BodyTimeout::Stalled(Duration::from_millis(500)))
        );
        assert!(Instant::now() - began >= Duration::from_millis(500));
        drop(sender);
    }

    #[tokio::test]
    async fn a_crawling_body_fails_once_the_grace_is_over() {
        let (sender, body) = channel();
        let mut body = RequestBody::new(body, &limits(1000, 100, 2000));
        // 10 bytes every 500 ms: 20 bytes/s, below 100 bytes/s.
        let began = Instant::now();
        let failed = loop {
            sender
                .send(Bytes::from_static(b"0123456789"))
                .await
                .unwrap();
            match body.frame().await.unwrap() {
                Ok(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                Err(error) => break error,
            }
        };
        assert_eq!(
            body_timeout(failed.as_ref()),
            Some(BodyTimeout::TooSlow(100))
        );
        let took = Instant::now() - began;
        assert!(took >= Duration::from_millis(2000) && took <= Duration::from_millis(4000));
    }

    #[tokio::test]
    async fn a_steady_body_arrives_whole() {
        let (sender, body) = channel();
        let mut body = RequestBody::new(body, &limits(1000, 100, 500));
        let feeder = tokio::spawn(async move {
            for _ in 0..20 {
                sender.send(Bytes::from(vec![7u8; 100])).await.unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        let mut total = 0;
        while let Some(frame) = body.frame().await {
            total += frame.unwrap().into_data().unwrap().len();
        }
        feeder.await.unwrap();
        assert_eq!(total, 2000);
    }

    #[test]
    fn other_errors_are_not_timeouts() {
        let error = std::io::Error::other("reset");
        assert_eq!(body_timeout(&error), None);
    }
}
