//! The run's HTTP/1.1 client for plain `http://` targets: keep-alive connections opened
//! on demand and kept on a stack of idle ones, each carrying one request at a time.
//!
//! The generator shares the machine with what it measures, so every microsecond it spends
//! per request is taken from the target. A general-purpose client parses and converts the
//! URL, clones its connector and walks its pool for every request; this one sends
//! requests built from parts rendered once (see `plan`) over hyper's connection API, at
//! about half the CPU per request. `https://` targets still go through reqwest.

use std::sync::Mutex;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why an exchange got no whole answer.
#[derive(Debug)]
pub(crate) enum ExchangeError {
    /// No connection could be opened.
    Connect(String),
    /// The connection failed during the exchange.
    Transport(String),
}

type Sender = SendRequest<Full<Bytes>>;

pub(crate) struct Connections {
    host: String,
    port: u16,
    idle: Mutex<Vec<Sender>>,
    /// At most this many idle connections are kept.
    keep: usize,
}

impl Connections {
    /// Connections to `host:port`, keeping up to `keep` idle ones.
    pub fn new(host: String, port: u16, keep: usize) -> Connections {
        Connections {
            host,
            port,
            idle: Mutex::new(Vec::with_capacity(keep.min(1024))),
            keep,
        }
    }

    /// Sends `request` (its URI in origin form, its `Host` header set) and reads the
    /// whole answer. A request that an idle connection closed under could not carry is
    /// sent once more on a new connection: it never reached the server.
    pub async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), ExchangeError> {
        let (mut sender, reused) = match self.take_idle().await {
            Some(sender) => (sender, true),
            None => (self.connect().await?, false),
        };
        let response = match sender.try_send_request(request).await {
            Ok(response) => response,
            Err(mut error) => match error.take_message() {
                Some(request) if reused && error.error().is_canceled() => {
                    sender = self.connect().await?;
                    sender.send_request(request).await.map_err(transport)?
                }
                _ => return Err(transport(error.into_error())),
            },
        };
        let answer = read(response).await?;
        self.put_idle(sender);
        Ok(answer)
    }

    /// The most recently used idle connection still open, if any.
    async fn take_idle(&self) -> Option<Sender> {
        loop {
            let mut sender = self.idle.lock().ok()?.pop()?;
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    fn put_idle(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.keep
        {
            idle.push(sender);
        }
    }

    async fn connect(&self) -> Result<Sender, ExchangeError> {
        let connect = |error: &dyn std::fmt::Display| {
            ExchangeError::Connect(format!(
                "cannot connect to {}:{}: {error}",
                self.host, self.port
            ))
        };
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| connect(&e))?;
        stream.set_nodelay(true).map_err(|e| connect(&e))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| connect(&e))?;
        // Ends when the server closes the connection or the sender is dropped.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

async fn read(response: Response<Incoming>) -> Result<(StatusCode, Bytes), ExchangeError> {
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(transport)?
        .to_bytes();
    Ok((status, body))
}

fn transport(error: hyper::Error) -> ExchangeError {
    ExchangeError::Transport(format!("{:#}", anyhow::Error::from(error)))
}
