use super::*;
use linkerd2_proxy_api::destination::update::Update as U;
use prost::Message;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use strand_controller_core::Endpoint;

fn view(ids: &[u8]) -> Arc<ServicePortView> {
    let endpoints: BTreeMap<SocketAddr, Endpoint> = ids
        .iter()
        .map(|i| {
            let addr = SocketAddr::from(([10, 1, 0, *i], 8080));
            let ep = Endpoint {
                addr,
                pod: format!("web-{i}"),
                namespace: "default".into(),
                workload: "web".into(),
                service_account: "default".into(),
                identity: None,
                labels: BTreeMap::new(),
            };
            (addr, ep)
        })
        .collect();
    Arc::new(ServicePortView {
        service: ServiceKey::new("default", "web"),
        fqdn: "web.default.svc.cluster.local".into(),
        cluster_ip: None,
        port: 80,
        opaque: false,
        app_protocol: None,
        endpoints,
        http_routes: Vec::new(),
        grpc_routes: Vec::new(),
        profile: None,
    })
}

/// A short description of a batch: `+n` adds, `-n` removes, `none`/`gone`.
fn describe(batch: &Batch) -> Vec<String> {
    batch
        .iter()
        .map(|frame| {
            assert_eq!(frame[0], 0, "uncompressed");
            let len = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]);
            assert_eq!(len as usize, frame.len() - 5, "one message per frame");
            Update::decode(&frame[5..]).expect("an Update")
        })
        .map(|u| match u.update.expect("set") {
            U::Add(s) => format!("+{}", s.addrs.len()),
            U::Remove(s) => format!("-{}", s.addrs.len()),
            U::NoEndpoints(n) if n.exists => "none".to_string(),
            U::NoEndpoints(_) => "gone".to_string(),
        })
        .collect()
}

#[tokio::test]
async fn transitions() {
    let topics = Topics::default();
    let topic = topics.get(&ServiceKey::new("default", "web"), 80);
    let (a, b, empty) = (view(&[1, 2]), view(&[2, 3, 4]), view(&[]));
    type Case = (Sent, Option<Arc<ServicePortView>>, &'static [&'static str]);
    let cases: [Case; 10] = [
        (Sent::Nothing, None, &["gone"]),
        (Sent::Nothing, Some(empty.clone()), &["none"]),
        (Sent::Nothing, Some(a.clone()), &["+2"]),
        (Sent::Gone, None, &[]),
        (Sent::Gone, Some(b.clone()), &["+3"]),
        (Sent::View(a.clone()), None, &["gone"]),
        (Sent::View(a.clone()), Some(a.clone()), &[]),
        (Sent::View(a.clone()), Some(b.clone()), &["+2", "-1"]),
        (Sent::View(a.clone()), Some(empty.clone()), &["none"]),
        (Sent::View(empty.clone()), Some(b.clone()), &["+3"]),
    ];
    for (i, (sent, current, want)) in cases.into_iter().enumerate() {
        let got = describe(&topic.transition(&sent, &current).await);
        assert_eq!(
            got,
            want,
            "case {i}: {sent:?} -> {:?}",
            current.map(|v| v.endpoints.len())
        );
    }
    let same_empty = describe(
        &topic
            .transition(&Sent::View(empty.clone()), &Some(view(&[])))
            .await,
    );
    assert!(
        same_empty.is_empty(),
        "empty to empty sends nothing: {same_empty:?}"
    );
}

#[tokio::test]
async fn results_are_shared_between_streams() {
    let topics = Topics::default();
    let key = ServiceKey::new("default", "web");
    let (t1, t2) = (topics.get(&key, 80), topics.get(&key, 80));
    assert!(Arc::ptr_eq(&t1, &t2), "one topic per service port");
    assert!(!Arc::ptr_eq(&t1, &topics.get(&key, 81)));

    let (a, b) = (view(&[1, 2]), view(&[1, 2, 3]));
    let d1 = t1
        .transition(&Sent::View(a.clone()), &Some(b.clone()))
        .await;
    let d2 = t2
        .transition(&Sent::View(a.clone()), &Some(b.clone()))
        .await;
    assert!(Arc::ptr_eq(&d1, &d2), "the diff is computed once");
    let f1 = t1.transition(&Sent::Nothing, &Some(b.clone())).await;
    let f2 = t2.transition(&Sent::Gone, &Some(b.clone())).await;
    assert!(Arc::ptr_eq(&f1, &f2), "the full set is built once");
    // An equal but distinct view is a new version: computed again.
    let f3 = t1.transition(&Sent::Nothing, &Some(view(&[1, 2, 3]))).await;
    assert!(!Arc::ptr_eq(&f1, &f3));
    assert_eq!(describe(&f1), describe(&f3));
}

#[tokio::test]
async fn memo_keeps_the_latest_diffs() {
    let topic = Topics::default().get(&ServiceKey::new("default", "web"), 80);
    let views: Vec<_> = (1..=MEMO_DIFFS as u8 + 2)
        .map(|n| view(&(1..=n).collect::<Vec<_>>()))
        .collect();
    let mut first = Vec::new();
    for pair in views.windows(2) {
        first.push(
            topic
                .transition(&Sent::View(pair[0].clone()), &Some(pair[1].clone()))
                .await,
        );
    }
    let again = |i: usize| {
        let (old, new) = (views[i].clone(), views[i + 1].clone());
        let topic = topic.clone();
        async move { topic.transition(&Sent::View(old), &Some(new)).await }
    };
    let last = views.len() - 2;
    assert!(Arc::ptr_eq(&first[last], &again(last).await), "latest kept");
    assert!(!Arc::ptr_eq(&first[0], &again(0).await), "oldest evicted");
}

#[test]
fn registry_forgets_a_topic_with_no_streams() {
    let topics = Topics::default();
    let key = ServiceKey::new("default", "web");
    let topic = topics.get(&key, 80);
    let other = topics.get(&key, 81);
    assert_eq!(topics.len(), 2);
    drop(topic);
    assert_eq!(topics.len(), 1);
    let again = topics.get(&key, 80);
    assert_eq!(topics.len(), 2);
    drop((other, again));
    assert_eq!(topics.len(), 0);
}

#[tokio::test]
async fn memo_does_not_keep_views_alive() {
    let topic = Topics::default().get(&ServiceKey::new("default", "web"), 80);
    let (a, b) = (view(&[1, 2]), view(&[1, 2, 3]));
    let full = topic.transition(&Sent::Nothing, &Some(a.clone())).await;
    let diff = topic
        .transition(&Sent::View(a.clone()), &Some(b.clone()))
        .await;
    assert_eq!(Arc::strong_count(&a), 1, "only the test holds the views");
    assert_eq!(Arc::strong_count(&b), 1);
    let again = topic
        .transition(&Sent::View(a.clone()), &Some(b.clone()))
        .await;
    assert!(Arc::ptr_eq(&diff, &again), "still memoized while alive");
    assert_eq!(describe(&full), ["+2"]);
}
