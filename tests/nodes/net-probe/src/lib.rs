//! `tcp-echo` and `udp-echo` send `message` to `address` and return the reply; `resolve` looks
//! `name` up. Failures are outputs (`error`), so tests can see what the sandbox refused.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::time::Duration;
use warden_sdk::prelude::*;

fn tcp_echo(address: &str, message: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(message.as_bytes())?;
    let mut reply = vec![0; message.len()];
    stream.read_exact(&mut reply)?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

fn udp_echo(address: &str, message: &str) -> std::io::Result<String> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.send_to(message.as_bytes(), address)?;
    let mut reply = vec![0; 1500];
    let (size, _) = socket.recv_from(&mut reply)?;
    Ok(String::from_utf8_lossy(&reply[..size]).into_owned())
}

/// Connects to `address` again and again, holding every connection, until one fails or 2000
/// are open; returns how many were open.
fn tcp_hold(address: &str) -> std::io::Result<String> {
    let mut held = Vec::new();
    while held.len() < 2000 {
        match TcpStream::connect(address) {
            Ok(stream) => held.push(stream),
            Err(error) => return Err(std::io::Error::other(format!("{} held; then {error}", held.len()))),
        }
    }
    Ok(held.len().to_string())
}

fn resolve(name: &str) -> std::io::Result<String> {
    let addresses: Vec<String> = (name, 0).to_socket_addrs()?.map(|address| address.ip().to_string()).collect();
    Ok(addresses.join(","))
}

struct NetProbe;

impl Node for NetProbe {
    const NAME: &'static str = "net";

    fn info() -> NodeInfo {
        NodeInfo::new(Self::NAME, "Network probe")
            .input(Pin::text("op").one_of(["tcp-echo", "udp-echo", "resolve", "tcp-hold"]))
            .input(Pin::text("address").default(""))
            .input(Pin::text("message").default("ping"))
            .output(Pin::text("reply"))
            .output(Pin::text("error"))
    }

    fn run(cx: &mut Context) -> Result<(), NodeError> {
        let op: String = cx.input("op")?;
        let address: String = cx.input("address")?;
        let message: String = cx.input("message")?;
        let result = match op.as_str() {
            "tcp-echo" => tcp_echo(&address, &message),
            "udp-echo" => udp_echo(&address, &message),
            "tcp-hold" => tcp_hold(&address),
            _ => resolve(&address),
        };
        match result {
            Ok(reply) => cx.output("reply", reply),
            Err(error) => cx.output("error", error.to_string()),
        }
        Ok(())
    }
}

warden_sdk::export_nodes!(NetProbe);
