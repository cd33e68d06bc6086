//! `replay record`: a recording TCP proxy. Clients connect to it instead of ccsd; every byte in
//! either direction is forwarded and written to the recording as it passes.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use crate::format::{Chunk, Direction, MAGIC, format_chunk};

/// What a forwarding thread tells the writer.
enum Event {
    Chunk(Chunk),
    /// One direction of a connection ended.
    Ended,
}

/// Records connections accepted on `listen`, forwarded to `target`, into `out`; returns after
/// `connections` connections have ended in both directions (or never, with `None`).
pub fn record(
    listen: SocketAddr,
    target: SocketAddr,
    out: File,
    connections: Option<usize>,
) -> io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    eprintln!(
        "replay: recording on {} for {target}",
        listener.local_addr()?
    );
    let start = Instant::now();
    let (tx, rx) = mpsc::channel();
    // Accepting blocks; it runs on its own thread so that recording ends when the writer does.
    thread::spawn(move || {
        for (id, client) in listener.incoming().enumerate() {
            let Ok(client) = client else { continue };
            if let Err(e) = proxy(client, target, id, start, &tx) {
                eprintln!("replay: connection {id}: {e}");
            }
        }
    });
    write_events(rx, out, connections)
}

/// Connects `client` to `target` and forwards both ways on two threads.
fn proxy(
    client: TcpStream,
    target: SocketAddr,
    id: usize,
    start: Instant,
    tx: &mpsc::Sender<Event>,
) -> io::Result<()> {
    let server = TcpStream::connect(target)?;
    for (from, to, direction) in [
        (client.try_clone()?, server.try_clone()?, Direction::Client),
        (server, client, Direction::Server),
    ] {
        let tx = tx.clone();
        thread::spawn(move || forward(from, to, id, direction, start, &tx));
    }
    Ok(())
}

/// Copies `from` to `to` until end of stream, reporting every chunk.
fn forward(
    mut from: TcpStream,
    mut to: TcpStream,
    connection: usize,
    direction: Direction,
    start: Instant,
    tx: &mpsc::Sender<Event>,
) {
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let micros = start.elapsed().as_micros() as u64;
        let chunk = Chunk {
            connection,
            direction,
            micros,
            bytes: buf[..n].to_vec(),
        };
        if tx.send(Event::Chunk(chunk)).is_err() || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = tx.send(Event::Ended);
}

/// Writes chunks as they come, flushing each so a killed recorder loses nothing it forwarded.
fn write_events(
    rx: mpsc::Receiver<Event>,
    out: File,
    connections: Option<usize>,
) -> io::Result<()> {
    let mut out = BufWriter::new(out);
    writeln!(out, "{MAGIC}")?;
    let mut ended = 0;
    for event in rx {
        match event {
            Event::Chunk(c) => {
                out.write_all(format_chunk(&c).as_bytes())?;
                out.flush()?;
            }
            Event::Ended => {
                ended += 1;
                if connections.is_some_and(|n| ended >= 2 * n) {
                    break;
                }
            }
        }
    }
    out.flush()
}
