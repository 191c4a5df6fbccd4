//! HTTP/1 `Upgrade` (WebSocket and friends) and `CONNECT`: the request is
//! forwarded on a dedicated upstream connection; once the upstream answers
//! 101 (or 2xx to CONNECT) both sides become one opaque byte tunnel.

use http::{Method, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::{Forward, headers};
use crate::errors::ProxyError;

pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    if req.version() != Version::HTTP_11 {
        return false;
    }
    if req.method() == Method::CONNECT {
        return true;
    }
    let connection_upgrade = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade && req.headers().contains_key(header::UPGRADE)
}

pub async fn forward(
    fwd: &Forward,
    mut req: Request<Incoming>,
    out: &mut crate::metrics::EndpointLabels,
) -> Result<Response<super::UpstreamBody>, ProxyError> {
    let (addr, endpoint) = fwd.tunnel_target()?;
    *out = endpoint;
    let tls = &out.tls;
    let is_connect = req.method() == Method::CONNECT;
    let downstream = hyper::upgrade::on(&mut req);
    headers::strip_hop_by_hop(req.headers_mut(), !is_connect);
    let mut tx = fwd.client.h1_upgradable(addr, tls).await?;
    let mut rsp = tx
        .send_request(req.map(super::RequestBody::from))
        .await
        .map_err(|source| ProxyError::Upstream { addr, source })?;
    let switched = if is_connect {
        rsp.status().is_success()
    } else {
        rsp.status() == StatusCode::SWITCHING_PROTOCOLS
    };
    if switched {
        let upstream = hyper::upgrade::on(&mut rsp);
        tokio::spawn(async move {
            let (down, up) = match tokio::try_join!(downstream, upstream) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "upgrade did not complete");
                    return;
                }
            };
            let (mut down, mut up) = (TokioIo::new(down), TokioIo::new(up));
            match tokio::io::copy_bidirectional(&mut down, &mut up).await {
                Ok((tx, rx)) => tracing::debug!(%addr, tx, rx, "tunnel closed"),
                Err(e) => tracing::debug!(%addr, error = %e, "tunnel failed"),
            }
        });
    }
    Ok(rsp.map(super::UpstreamBody::from))
}
