//! What a client may hold, and for how long. docs/registry.md ("Server limits") lists each
//! limit with its default and what a client sees when it is reached.

use std::time::Duration;

/// Every timeout and cap the server enforces. `ServerLimits::default()` suits a public
/// registry; tests use short timeouts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// The TLS handshake must finish within this, counted from the accept.
    pub handshake_timeout: Duration,
    /// After the handshake, the client must send its first byte within this.
    pub first_byte_timeout: Duration,
    /// A request's headers must arrive whole within this. It also bounds protocol detection
    /// (an HTTP/2 preface sent by halves) and, for HTTP/1.1, the wait for the next request on
    /// a kept-alive connection (hyper restarts its header timer as soon as a response is done).
    pub header_timeout: Duration,
    /// Each read of a request body must bring data within this.
    pub body_read_timeout: Duration,
    /// From `rate_grace` on, a request body must have averaged at least this many bytes per
    /// second since the handler began reading it.
    pub min_body_rate: u64,
    /// How long a body (request or response) may run before its average rate is checked, so
    /// small bodies and slow starts are never judged.
    pub rate_grace: Duration,
    /// A response chunk the client does not take within this (or a write to the socket that
    /// stays blocked this long) ends the connection, and with it what the response held.
    pub send_timeout: Duration,
    /// From `rate_grace` on, the client must have taken a response's bytes at this many bytes
    /// per second on average, counting only the time the server waited on it.
    pub min_send_rate: u64,
    /// A connection with no request in flight is closed after this (HTTP/2 gets a GOAWAY).
    pub idle_timeout: Duration,
    /// How often an HTTP/2 connection is pinged.
    pub h2_keep_alive_interval: Duration,
    /// An HTTP/2 ping not answered within this ends the connection.
    pub h2_keep_alive_timeout: Duration,
    /// Requests one HTTP/2 connection may have open at once.
    pub h2_max_concurrent_streams: u32,
    /// Connections open at once (handshakes included); past it new ones are closed at once.
    pub max_connections: usize,
    /// Connections open at once from one IPv4 address or one IPv6 /64.
    pub max_connections_per_ip: usize,
    /// On shutdown, how long connections get to finish what they are doing.
    pub shutdown_grace: Duration,
}

/// The longest duration a limit may hold.
const YEAR: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Default connections open at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default connections open at once from one address.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 64;

impl Default for ServerLimits {
    fn default() -> Self {
        let seconds = Duration::from_secs;
        ServerLimits {
            handshake_timeout: seconds(10),
            first_byte_timeout: seconds(10),
            header_timeout: seconds(10),
            body_read_timeout: seconds(15),
            min_body_rate: 16 * 1024,
            rate_grace: seconds(10),
            send_timeout: seconds(30),
            min_send_rate: 16 * 1024,
            idle_timeout: seconds(60),
            h2_keep_alive_interval: seconds(20),
            h2_keep_alive_timeout: seconds(10),
            h2_max_concurrent_streams: 64,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            shutdown_grace: seconds(10),
        }
    }
}

impl ServerLimits {
    /// The same limits with zero durations and caps raised to their smallest working value,
    /// so a misconfiguration cannot turn a timeout off or refuse every connection (hyper also
    /// panics on some zero durations), and durations held to a year, so no deadline overflows.
    pub fn sanitized(&self) -> ServerLimits {
        let at_least = |duration: Duration| duration.clamp(Duration::from_millis(10), YEAR);
        ServerLimits {
            handshake_timeout: at_least(self.handshake_timeout),
            first_byte_timeout: at_least(self.first_byte_timeout),
            header_timeout: at_least(self.header_timeout),
            body_read_timeout: at_least(self.body_read_timeout),
            min_body_rate: self.min_body_rate,
            rate_grace: at_least(self.rate_grace),
            send_timeout: at_least(self.send_timeout),
            min_send_rate: self.min_send_rate,
            idle_timeout: at_least(self.idle_timeout),
            h2_keep_alive_interval: at_least(self.h2_keep_alive_interval),
            h2_keep_alive_timeout: at_least(self.h2_keep_alive_timeout),
            h2_max_concurrent_streams: self.h2_max_concurrent_streams.max(1),
            max_connections: self.max_connections.max(1),
            max_connections_per_ip: self.max_connections_per_ip.max(1),
            shutdown_grace: self.shutdown_grace.min(YEAR),
        }
    }

    /// How often each connection's watchdog looks at it: a quarter of the shortest timeout it
    /// enforces, so a timeout fires at most 25% late, and never more than once every 10 ms.
    pub(crate) fn watchdog_tick(&self) -> Duration {
        let shortest = [
            self.first_byte_timeout,
            self.header_timeout,
            self.send_timeout,
            self.idle_timeout,
            self.rate_grace,
        ]
        .into_iter()
        .min()
        .unwrap_or(Duration::from_secs(1));
        (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

/// Whether `bytes` over `elapsed` falls below `rate` bytes per second, once `elapsed` has
/// passed `grace`.
pub(crate) fn too_slow(bytes: u64, elapsed: Duration, grace: Duration, rate: u64) -> bool {
    elapsed >= grace && (bytes as f64) < rate as f64 * elapsed.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_limits_are_raised_to_working_values() {
        let zero = ServerLimits {
            handshake_timeout: Duration::ZERO,
            header_timeout: Duration::ZERO,
            max_connections: 0,
            max_connections_per_ip: 0,
            h2_max_concurrent_streams: 0,
            ..ServerLimits::default()
        }
        .sanitized();
        assert!(zero.handshake_timeout > Duration::ZERO);
        assert!(zero.header_timeout > Duration::ZERO);
        assert_eq!(zero.max_connections, 1);
        assert_eq!(zero.max_connections_per_ip, 1);
        assert_eq!(zero.h2_max_concurrent_streams, 1);
        let huge = ServerLimits {
            send_timeout: Duration::MAX,
            shutdown_grace: Duration::MAX,
            ..ServerLimits::default()
        }
        .sanitized();
        assert_eq!(huge.send_timeout, YEAR);
        assert_eq!(huge.shutdown_grace, YEAR);
    }

    #[test]
    fn the_watchdog_ticks_at_a_quarter_of_the_shortest_timeout() {
        let limits = ServerLimits {
            header_timeout: Duration::from_millis(400),
            ..ServerLimits::default()
        };
        assert_eq!(limits.watchdog_tick(), Duration::from_millis(100));
        assert_eq!(
            ServerLimits::default().watchdog_tick(),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn the_rate_is_judged_only_after_the_grace() {
        let second = Duration::from_secs(1);
        assert!(!too_slow(0, second * 9, second * 10, 100));
        assert!(too_slow(999, second * 10, second * 10, 100));
        assert!(!too_slow(1000, second * 10, second * 10, 100));
        assert!(!too_slow(0, second * 100, second * 10, 0));
    }
}
