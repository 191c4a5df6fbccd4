//! A server with a fixed zone, query builders, clients, and fake upstreams.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use hickory_proto::{
    op::{Edns, Message, Query},
    rr::{Name, RData, Record, RecordType, rdata::A},
};
use strand_controller_dns::{Config, Lookup, Server, StatsHandle};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::oneshot,
    task::JoinHandle,
};

/// Same variable as strand-testkit's `assert_eventually!`, read here so
/// this crate does not pull the testkit's dependencies.
const PATIENCE_ENV: &str = "STRAND_TEST_PATIENCE_MS";

/// The address every fake upstream answers with.
pub const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

/// How long a client waits for an answer before the test fails: 10 s
/// unless `STRAND_TEST_PATIENCE_MS` says otherwise.
pub fn patience() -> Duration {
    std::env::var(PATIENCE_ENV)
        .ok()
        .map(|v| Duration::from_millis(v.parse().expect("STRAND_TEST_PATIENCE_MS is a number")))
        .unwrap_or(Duration::from_secs(10))
}

/// A running server; shut down when dropped.
pub struct Dns {
    pub addr: SocketAddr,
    pub stats: StatsHandle,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Dns {
    /// Stops the server and waits for `run` to return.
    pub async fn stop(mut self) {
        self.shutdown.take();
        let task = self.task.take().expect("the server is running");
        tokio::time::timeout(patience(), task)
            .await
            .expect("run returns after shutdown")
            .expect("run does not panic");
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The zone every test serves.
pub fn lookup(name: &str) -> Lookup {
    let ip = |s: &str| s.parse::<IpAddr>().expect("valid test address");
    match name {
        "web.default.svc.cluster.local" => Lookup::Found(vec![ip("10.96.0.10"), ip("fd00::10")]),
        "v4only.default.svc.cluster.local" => Lookup::Found(vec![ip("10.96.0.11")]),
        "many.default.svc.cluster.local" => {
            Lookup::Found((0..100u8).map(|i| IpAddr::from([10, 97, 0, i])).collect())
        }
        "default.svc.cluster.local" | "svc.cluster.local" => Lookup::Found(vec![]),
        _ => Lookup::NoSuchName,
    }
}

pub async fn start(config: Config) -> Dns {
    let localhost = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let server = Server::bind(localhost, config, Arc::new(lookup))
        .await
        .expect("binds on 127.0.0.1:0");
    let addr = server.local_addr();
    let stats = server.stats();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    Dns {
        addr,
        stats,
        shutdown: Some(tx),
        task: Some(task),
    }
}

pub fn query(name: &str, qtype: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    let name = Name::from_ascii(name).expect("valid test name");
    message.add_query(Query::query(name, qtype));
    message
}

pub fn with_edns(mut message: Message, max_payload: u16) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(max_payload);
    message.edns = Some(edns);
    message
}

pub fn encode(message: &Message) -> Vec<u8> {
    message.to_vec().expect("test messages encode")
}

pub fn framed(bytes: &[u8]) -> Vec<u8> {
    let len = u16::try_from(bytes.len()).expect("test messages are small");
    [&len.to_be_bytes()[..], bytes].concat()
}

/// A UDP client socket on 127.0.0.1:0, connected to `server`.
pub async fn udp_client(server: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("binds a client socket");
    socket.connect(server).await.expect("connects");
    socket
}

/// The next datagram on `socket`, decoded.
pub async fn recv(socket: &UdpSocket) -> (Message, usize) {
    let mut buf = vec![0; 65535];
    let n = tokio::time::timeout(patience(), socket.recv(&mut buf))
        .await
        .expect("the server answers in time")
        .expect("receives");
    let message = Message::from_vec(&buf[..n]).expect("the answer decodes");
    (message, n)
}

/// Sends `message` over UDP and returns the answer (checked for the ID).
pub async fn udp(server: SocketAddr, message: &Message) -> Message {
    let socket = udp_client(server).await;
    socket.send(&encode(message)).await.expect("sends");
    let (answer, _) = recv(&socket).await;
    assert_eq!(answer.id, message.id, "answer ID matches the query's");
    answer
}

/// Reads one length-prefixed message from `stream`.
pub async fn read_framed(stream: &mut TcpStream) -> Message {
    let read = async {
        let len = stream.read_u16().await?;
        let mut buf = vec![0; usize::from(len)];
        stream.read_exact(&mut buf).await?;
        std::io::Result::Ok(buf)
    };
    let buf = tokio::time::timeout(patience(), read)
        .await
        .expect("the server answers in time")
        .expect("reads a framed answer");
    Message::from_vec(&buf).expect("the answer decodes")
}

/// Sends `message` over a new TCP connection and returns the answer.
pub async fn tcp(server: SocketAddr, message: &Message) -> Message {
    let mut stream = TcpStream::connect(server).await.expect("connects");
    stream
        .write_all(&framed(&encode(message)))
        .await
        .expect("writes");
    let answer = read_framed(&mut stream).await;
    assert_eq!(answer.id, message.id, "answer ID matches the query's");
    answer
}

/// Whether the server closes `stream` (EOF or reset) within patience.
pub async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0; 1];
    matches!(
        tokio::time::timeout(patience(), stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// An upstream resolver on UDP and TCP (same port) that answers every
/// query with one A record, [`UPSTREAM_ANSWER`], and counts what it saw.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub udp_queries: Arc<AtomicUsize>,
    pub tcp_queries: Arc<AtomicUsize>,
    /// The IDs of the queries it received, to check they were rewritten.
    pub ids: Arc<std::sync::Mutex<Vec<u16>>>,
    _tasks: tokio::task::JoinSet<()>,
}

impl FakeUpstream {
    pub async fn start() -> Self {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .expect("binds");
            let addr = udp.local_addr().expect("bound");
            if let Ok(tcp) = TcpListener::bind(addr).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().expect("bound");
        let udp_queries = Arc::new(AtomicUsize::new(0));
        let tcp_queries = Arc::new(AtomicUsize::new(0));
        let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = tokio::task::JoinSet::new();

        let (count, seen) = (udp_queries.clone(), ids.clone());
        tasks.spawn(async move {
            let mut buf = vec![0; 4096];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                count.fetch_add(1, Ordering::SeqCst);
                let answer = answer(&buf[..n], &seen);
                udp.send_to(&answer, from)
                    .await
                    .expect("fake upstream sends");
            }
        });
        let (count, seen) = (tcp_queries.clone(), ids.clone());
        tasks.spawn(async move {
            while let Ok((mut stream, _)) = tcp.accept().await {
                let len = stream.read_u16().await.expect("fake upstream reads");
                let mut buf = vec![0; usize::from(len)];
                stream
                    .read_exact(&mut buf)
                    .await
                    .expect("fake upstream reads");
                count.fetch_add(1, Ordering::SeqCst);
                let answer = framed(&answer(&buf, &seen));
                stream
                    .write_all(&answer)
                    .await
                    .expect("fake upstream writes");
            }
        });
        Self {
            addr,
            udp_queries,
            tcp_queries,
            ids,
            _tasks: tasks,
        }
    }
}

fn answer(query: &[u8], seen: &std::sync::Mutex<Vec<u16>>) -> Vec<u8> {
    let query = Message::from_vec(query).expect("the server forwards a valid query");
    seen.lock().expect("not poisoned").push(query.id);
    let mut answer = Message::response(query.id, query.op_code);
    answer.metadata.recursion_desired = query.recursion_desired;
    answer.metadata.recursion_available = true;
    answer.queries = query.queries.clone();
    let name = query.queries[0].name().clone();
    answer.add_answer(Record::from_rdata(name, 300, RData::A(A(UPSTREAM_ANSWER))));
    encode(&answer)
}
