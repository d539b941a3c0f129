//! A local stand-in for Coinbase's public feed, for measuring `--source coinbase`
//! without the internet: plain `ws://`, answers the documented subscribe request with
//! `subscriptions`, then sends `ticker` messages (Coinbase's field set) at a fixed total
//! rate spread over the subscribed products, and a `heartbeat` per product each second.
//!
//! ```text
//! cargo run --release --example fake_exchange -- [--addr 127.0.0.1:9100] [--rate 1000]
//! crypto-ticker --source coinbase --source-url ws://127.0.0.1:9100
//! ```

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tungstenite::Message;

fn main() {
    let mut addr = "127.0.0.1:9100".to_owned();
    let mut rate: u64 = 1000;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next().unwrap_or_default();
        match a.as_str() {
            "--addr" => addr = value,
            "--rate" => rate = value.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    let listener = TcpListener::bind(&addr).unwrap_or_else(|e| {
        eprintln!("fake_exchange: cannot listen on {addr}: {e}");
        std::process::exit(1)
    });
    eprintln!("fake_exchange: coinbase-style feed on ws://{addr}, {rate} updates/s");
    for tcp in listener.incoming().flatten() {
        std::thread::spawn(move || {
            if let Err(e) = serve(tcp, rate) {
                eprintln!("fake_exchange: connection ended: {e}");
            }
        });
    }
}

fn usage() -> ! {
    eprintln!("usage: fake_exchange [--addr HOST:PORT] [--rate UPDATES_PER_SECOND]");
    std::process::exit(2)
}

fn serve(tcp: TcpStream, rate: u64) -> Result<(), Box<dyn std::error::Error>> {
    tcp.set_nodelay(true)?;
    let mut ws = tungstenite::accept(tcp)?;
    let products: Vec<String> = loop {
        if let Message::Text(t) = ws.read()? {
            let v: serde_json::Value = serde_json::from_str(t.as_str())?;
            if v["type"] == "subscribe" {
                let products = v["product_ids"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|p| p.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                break products;
            }
        }
    };
    let ack = serde_json::json!({"type":"subscriptions","channels":[
        {"name":"ticker","product_ids":products},{"name":"heartbeat","product_ids":products}]});
    ws.send(Message::text(ack.to_string()))?;
    if products.is_empty() {
        return Ok(());
    }
    // Batches every millisecond, catching up to `rate` per second from the start.
    let started = Instant::now();
    let (mut sent, mut seq) = (0u64, 1u64);
    let mut next_heartbeat = started;
    let mut prices: Vec<f64> = (0..products.len()).map(|i| 1000.0 * (i + 1) as f64).collect();
    loop {
        let now = Instant::now();
        let due = (now.duration_since(started).as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let i = (sent % products.len() as u64) as usize;
            prices[i] =
                (prices[i] * (1.0 + ((seq % 7) as f64 - 3.0) * 1e-5) * 100.0).round() / 100.0;
            let msg = format!(
                r#"{{"type":"ticker","sequence":{seq},"product_id":"{}","price":"{}","open_24h":"1310.79","volume_24h":"245532.79269678","low_24h":"1280.52","high_24h":"1313.8","volume_30d":"9788783.60117027","best_bid":"{}","best_bid_size":"0.46688654","best_ask":"{}","best_ask_size":"1.56637040","side":"buy","time":"{}","trade_id":{seq},"last_size":"0.01"}}"#,
                products[i],
                prices[i],
                prices[i],
                prices[i],
                rfc3339(SystemTime::now())
            );
            ws.write(Message::text(msg))?;
            sent += 1;
            seq += 1 + seq % 3; // Coinbase's sequences have gaps.
        }
        if now >= next_heartbeat {
            next_heartbeat += Duration::from_secs(1);
            for p in &products {
                let hb = format!(
                    r#"{{"type":"heartbeat","sequence":{seq},"last_trade_id":{seq},"product_id":"{p}","time":"{}"}}"#,
                    rfc3339(SystemTime::now())
                );
                ws.write(Message::text(hb))?;
            }
        }
        ws.flush()?;
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The exchange's time of a message, as Coinbase writes it.
fn rfc3339(t: SystemTime) -> String {
    let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    crypto_ticker::source::time::format_rfc3339_ms(ms)
}
