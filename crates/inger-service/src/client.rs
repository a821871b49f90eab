//! A small HTTP client for the service (hyper, pooled keep-alive connections), used by the load
//! generator and the tests.

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client as Pooled;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::work::Kind;

/// An answer: its status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// A client of one service.
#[derive(Debug, Clone)]
pub struct Client {
    address: SocketAddr,
    inner: Pooled<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// A client of the service at `address` (must be a loopback address).
    ///
    /// # Panics
    /// If `address` is not a loopback address: the load generator only ever targets this
    /// machine.
    pub fn new(address: SocketAddr) -> Client {
        assert!(
            address.ip().is_loopback(),
            "{address} is not a loopback address"
        );
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Client {
            address,
            inner: Pooled::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Sends the work request `kind` with `body`.
    ///
    /// # Errors
    /// If the request cannot be sent or the answer cannot be read.
    pub async fn post(&self, kind: Kind, body: impl Into<Bytes>) -> io::Result<Answer> {
        self.send(Method::POST, &format!("/{}", kind.name()), body)
            .await
    }

    /// Sends `GET path`.
    ///
    /// # Errors
    /// As for [`Client::post`].
    pub async fn get(&self, path: &str) -> io::Result<Answer> {
        self.send(Method::GET, path, Bytes::new()).await
    }

    async fn send(&self, method: Method, path: &str, body: impl Into<Bytes>) -> io::Result<Answer> {
        let request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.address))
            .body(Full::new(body.into()))
            .map_err(io::Error::other)?;
        let response = self
            .inner
            .request(request)
            .await
            .map_err(io::Error::other)?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(io::Error::other)?
            .to_bytes()
            .to_vec();
        Ok(Answer { status, body })
    }
}
