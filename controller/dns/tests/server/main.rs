//! The DNS server over real sockets on 127.0.0.1:0: in-zone answers,
//! forwarding to fake upstreams, and hostile input.

mod support;

mod forward;
mod local;
mod robustness;
