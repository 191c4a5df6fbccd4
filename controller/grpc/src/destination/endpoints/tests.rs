use super::*;
use linkerd2_proxy_api::destination::update::Update as U;
use std::collections::BTreeSet;

fn ep(i: u32, meshed: bool) -> Endpoint {
    let addr = SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 8080));
    Endpoint {
        addr,
        pod: format!("web-{i}"),
        namespace: "default".into(),
        workload: "web".into(),
        service_account: "web-sa".into(),
        identity: meshed.then(|| {
            IdentityName::new("web-sa.default.serviceaccount.identity.linkerd.cluster.local")
        }),
        labels: BTreeMap::from([("pod-template-hash".to_string(), "5d8f7".to_string())]),
    }
}

fn set(ids: impl IntoIterator<Item = u32>) -> BTreeMap<SocketAddr, Endpoint> {
    ids.into_iter()
        .map(|i| ep(i, true))
        .map(|e| (e.addr, e))
        .collect()
}

fn labels() -> HashMap<String, String> {
    set_labels(&ServiceKey::new("default", "web"))
}

/// The addresses added and removed by a batch, in order of appearance.
fn summary(updates: &[Update]) -> (Vec<SocketAddr>, Vec<SocketAddr>, Vec<bool>) {
    let (mut added, mut removed, mut none) = (vec![], vec![], vec![]);
    for u in updates {
        match u.update.as_ref().expect("update set") {
            U::Add(set) => {
                assert_eq!(set.metric_labels, labels());
                added.extend(
                    set.addrs
                        .iter()
                        .map(|a| SocketAddr::try_from(a.addr.expect("addr")).expect("valid addr")),
                );
            }
            U::Remove(set) => removed.extend(
                set.addrs
                    .iter()
                    .map(|a| SocketAddr::try_from(*a).expect("valid addr")),
            ),
            U::NoEndpoints(n) => none.push(n.exists),
        }
    }
    (added, removed, none)
}

#[test]
fn meshed_endpoint_has_identity_labels_and_h2_hint() {
    let wa = weighted_addr(&ep(1, true));
    assert_eq!(wa.weight, ENDPOINT_WEIGHT);
    assert_eq!(
        wa.metric_labels,
        HashMap::from([
            ("pod".to_string(), "web-1".to_string()),
            ("serviceaccount".to_string(), "web-sa".to_string()),
            ("deployment".to_string(), "web".to_string()),
            ("pod_template_hash".to_string(), "5d8f7".to_string()),
        ])
    );
    let id = wa.tls_identity.expect("identity");
    let want = "web-sa.default.serviceaccount.identity.linkerd.cluster.local";
    match id.strategy {
        Some(tls_identity::Strategy::DnsLikeIdentity(d)) => assert_eq!(d.name, want),
        other => panic!("unexpected strategy {other:?}"),
    }
    assert_eq!(id.server_name.expect("sni").name, want);
    let hint = wa.protocol_hint.expect("hint");
    assert!(matches!(
        hint.protocol,
        Some(protocol_hint::Protocol::H2(_))
    ));
    assert_eq!(hint.opaque_transport, None);
    assert_eq!(wa.authority_override, None);
}

#[test]
fn unmeshed_endpoint_has_neither_identity_nor_hint() {
    let wa = weighted_addr(&ep(1, false));
    assert_eq!(wa.tls_identity, None);
    assert_eq!(wa.protocol_hint, None);
    assert_eq!(wa.metric_labels["pod"], "web-1");
}

#[test]
fn full_set_is_chunked_and_empty_set_is_no_endpoints() {
    let (added, _, none) = summary(&full(&labels(), &BTreeMap::new()));
    assert!(added.is_empty());
    assert_eq!(none, [true]);

    let eps = set(0..2_500);
    let updates = full(&labels(), &eps);
    assert_eq!(updates.len(), 3, "1000 + 1000 + 500");
    let (added, removed, none) = summary(&updates);
    assert_eq!(added, eps.keys().copied().collect::<Vec<_>>());
    assert!(removed.is_empty() && none.is_empty());
}

#[test]
fn diff_of_known_changes() {
    let mut changed = set(0..5);
    if let Some(e) = changed.get_mut(&ep(2, true).addr) {
        e.identity = None;
    }
    let addr = |i| ep(i, true).addr;
    let cases: [(_, _, Vec<SocketAddr>, Vec<SocketAddr>, Vec<bool>); 7] = [
        (set(0..5), set(0..5), vec![], vec![], vec![]),
        (set(0..5), set(0..6), vec![addr(5)], vec![], vec![]),
        (set(0..5), set(1..5), vec![], vec![addr(0)], vec![]),
        (
            set(0..5),
            set([0, 1, 3, 4, 9]),
            vec![addr(9)],
            vec![addr(2)],
            vec![],
        ),
        (set(0..5), changed, vec![addr(2)], vec![], vec![]),
        (set(0..5), set([]), vec![], vec![], vec![true]),
        (set([]), set([]), vec![], vec![], vec![]),
    ];
    for (i, (old, new, add, remove, none)) in cases.into_iter().enumerate() {
        let got = summary(&diff(&labels(), &old, &new));
        assert_eq!(got, (add, remove, none), "case {i}");
    }
}

/// The merge agrees with a naive set difference on pseudo-random sets.
#[test]
fn diff_matches_naive_difference() {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..50 {
        let old: BTreeSet<u32> = (0..300).filter(|_| next() % 3 != 0).collect();
        let new: BTreeSet<u32> = (0..300).filter(|_| next() % 2 == 0).collect();
        let (added, removed, none) =
            summary(&diff(&labels(), &set(old.clone()), &set(new.clone())));
        let want_added: Vec<_> = new.difference(&old).map(|i| ep(*i, true).addr).collect();
        let want_removed: Vec<_> = old.difference(&new).map(|i| ep(*i, true).addr).collect();
        assert_eq!(added, want_added, "round {round}");
        assert_eq!(removed, want_removed, "round {round}");
        assert!(none.is_empty());
    }
}

#[test]
fn large_removals_are_chunked() {
    let updates = diff(&labels(), &set(0..2_002), &set([0]));
    assert_eq!(updates.len(), 3, "1000 + 1000 + 1");
    let (_, removed, _) = summary(&updates);
    assert_eq!(removed.len(), 2_001);
}
