use super::*;
use crate::{Resource, TargetPort};

fn err(text: &str) -> ManifestError {
    parse_manifests(text).expect_err("must be rejected")
}

#[test]
fn parses_services_in_several_documents() {
    let text = r#"
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  annotations:
    config.linkerd.io/opaque-ports: "5432,4000-4002"
spec:
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: 8080
  - name: admin
    port: 9990
    targetPort: admin
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  ports: [{port: 5432}]
"#;
    let rs = parse_manifests(text).expect("valid");
    assert_eq!(rs.len(), 2);
    let Resource::Service(web) = &rs[0] else {
        panic!("not a service")
    };
    assert_eq!(web.metadata.namespace, "shop");
    assert_eq!(web.spec.ports[0].target(), TargetPort::Number(8080));
    assert_eq!(web.spec.ports[1].target(), TargetPort::Name("admin".into()));
    assert_eq!(web.opaque_ports(), vec![5432, 4000, 4001, 4002]);
    assert_eq!(web.fqdn("cluster.local"), "web.shop.svc.cluster.local");
    let Resource::Service(db) = &rs[1] else {
        panic!("not a service")
    };
    assert_eq!(db.metadata.namespace, "default");
    assert_eq!(db.spec.ports[0].target(), TargetPort::Number(5432));
}

#[test]
fn json_round_trip_keeps_the_document_shape() {
    let rs = parse_manifests(
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 1}]}\n",
    )
    .expect("valid");
    let json = rs[0].to_json();
    assert_eq!(json["apiVersion"], "v1");
    assert_eq!(json["kind"], "Service");
    assert_eq!(parse_resource_json(json).expect("round trip"), rs[0]);
}

#[test]
fn rejects_bad_input_naming_document_field_and_reason() {
    let cases: &[(&str, usize, &str, &str)] = &[
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 1}]}\n---\nkind: [\n",
            2,
            "",
            "not valid YAML",
        ),
        (
            "apiVersion: v1\nkind: Deployment\nmetadata: {name: a}\n",
            1,
            "kind",
            "unknown kind \"Deployment\"",
        ),
        (
            "kind: Service\nmetadata: {name: a}\n",
            1,
            "apiVersion",
            "is required",
        ),
        (
            "apiVersion: v2\nkind: Service\nmetadata: {name: a}\n",
            1,
            "apiVersion",
            "served as \"v1\"",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{name: x}]}\n",
            1,
            "spec.ports[0].port",
            "is required",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n",
            1,
            "spec",
            "is required",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: http}]}\n",
            1,
            "spec.ports[0].port",
            "invalid type",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 70000}]}\n",
            1,
            "spec.ports[0].port",
            "invalid value",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{name: a, port: 80}, {name: b, port: 80}]}\n",
            1,
            "spec.ports[1].port",
            "duplicate port 80/TCP",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{name: a, port: 80}, {name: a, port: 81}]}\n",
            1,
            "spec.ports[1].name",
            "duplicate port name",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}, {port: 81}]}\n",
            1,
            "spec.ports[0].name",
            "more than one port",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: Web_1}\nspec: {ports: [{port: 80}]}\n",
            1,
            "metadata.name",
            "lower case",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: []}\n",
            1,
            "spec.ports",
            "at least one port",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIP: banana, ports: [{port: 80}]}\n",
            1,
            "spec.clusterIP",
            "not an IP",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nsepc: {ports: [{port: 80}]}\n",
            1,
            "",
            "unknown field `sepc`",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: a, annotations: {config.linkerd.io/opaque-ports: \"x\"}}\nspec: {ports: [{port: 80}]}\n",
            1,
            "metadata.annotations",
            "not a port",
        ),
        ("- just\n- a list\n", 1, "", "must be a mapping"),
    ];
    for (text, document, field, reason) in cases {
        let e = err(text);
        assert_eq!(e.document, *document, "{text}: {e}");
        assert!(
            e.field.starts_with(field),
            "{text}: field {:?} in {e}",
            e.field
        );
        assert!(
            e.reason.contains(reason),
            "{text}: reason {:?} in {e}",
            e.reason
        );
    }
}

#[test]
fn error_message_names_the_resource() {
    let e = err(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {ports: [{port: 0}]}\n",
    );
    assert_eq!(
        e.to_string(),
        "document 1 (Service shop/web): spec.ports[0].port: must be between 1 and 65535"
    );
}

#[test]
fn empty_documents_are_skipped() {
    assert_eq!(parse_manifests("---\n---\n").expect("valid").len(), 0);
}

#[test]
fn workloads_and_pods_parse() {
    let text = r#"
apiVersion: local.strand.io/v1alpha1
kind: Workload
metadata: {name: web, labels: {app: web}}
spec: {replicas: 2, ports: [{name: http, containerPort: 8080}]}
---
apiVersion: local.strand.io/v1alpha1
kind: Pod
metadata: {name: web-1, labels: {app: web}}
spec: {workload: web, ports: [{name: http, containerPort: 8080}]}
status: {podIP: 10.42.0.5, ready: true, meshed: true}
"#;
    let rs = parse_manifests(text).expect("valid");
    let Resource::Pod(pod) = &rs[1] else {
        panic!("not a pod")
    };
    assert_eq!(
        pod.resolve_port(&TargetPort::Name("http".into())),
        Some(8080)
    );
    assert_eq!(
        pod.identity(&crate::TrustDomain::default())
            .expect("meshed")
            .as_str(),
        "default.default.serviceaccount.identity.linkerd.cluster.local"
    );
}
