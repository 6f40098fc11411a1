//! The per-address cap on a dual-stack listener: IPv4 clients arrive as IPv4-mapped IPv6
//! addresses (`::ffff:a.b.c.d`), which all lie in one IPv6 /64 (`::/64`, with `::1`); each
//! must count as its own IPv4 address, or one IPv4 client could lock out every other.

use super::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

async fn tcp(from: IpAddr, port: u16) -> tokio::net::TcpStream {
    let (socket, to) = match from {
        IpAddr::V4(_) => (
            tokio::net::TcpSocket::new_v4().unwrap(),
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
        ),
        IpAddr::V6(_) => (
            tokio::net::TcpSocket::new_v6().unwrap(),
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port),
        ),
    };
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// Whether the server closes `tcp` (a refusal) within a second; a held connection stays
/// open and silent.
async fn refused(tcp: &mut tokio::net::TcpStream) -> bool {
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(1), tcp.read(&mut byte)).await;
    matches!(read, Ok(Ok(0)) | Ok(Err(_)))
}

#[test]
fn ipv4_clients_of_a_dual_stack_listener_are_capped_each_as_its_own_address() {
    let served = Served::start(&[
        "--listen",
        "[::]:0",
        "--max-connections-per-ip",
        "2",
        "--first-byte-timeout",
        "60s",
        "--handshake-timeout",
        "60s",
    ]);
    let port: u16 = served.address.rsplit(':').next().unwrap().parse().unwrap();
    let sources: [IpAddr; 3] = [
        Ipv4Addr::new(127, 0, 0, 2).into(),
        Ipv4Addr::new(127, 0, 0, 3).into(),
        Ipv6Addr::LOCALHOST.into(),
    ];
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut held = Vec::new();
        for from in sources {
            // Two from each source are held; the third is refused at once.
            for _ in 0..2 {
                let mut connection = tcp(from, port).await;
                assert!(
                    !refused(&mut connection).await,
                    "{from}: refused under the cap"
                );
                held.push(connection);
            }
            let mut third = tcp(from, port).await;
            assert!(
                refused(&mut third).await,
                "{from}: a third connection was held"
            );
        }
    });
}
