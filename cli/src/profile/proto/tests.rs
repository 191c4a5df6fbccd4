use super::*;
use crate::profile::{generated, tests::parse};
use strand_controller_core::compile_path_regex;

/// `(name, pathRegex)` of each route of the file's profile, printed and
/// parsed back as `strand apply` would.
fn summary(proto: &str) -> Vec<(String, String)> {
    let routes = routes(proto).expect("routes");
    let text = generated("books", "default", "cluster.local", "--proto t", routes)
        .expect("a valid profile");
    parse(&text)
        .spec
        .routes
        .into_iter()
        .map(|r| {
            assert_eq!(r.condition.method.as_deref(), Some("POST"));
            (r.name, r.condition.path_regex.expect("a path regex"))
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn error(proto: &str) -> String {
    format!("{:#}", routes(proto).expect_err("an error"))
}

const BOOKS: &str = r#"// Books and their authors.
syntax = "proto3";

/* A block comment hides a service:
service Fake { rpc Nope(A) returns (B); }
*/
package example.books.v1; // a trailing comment

import "google/api/annotations.proto";
import public "google/protobuf/empty.proto";
option go_package = "example.com/books;books";

message Book {
  string name = 1;
  map<string, string> labels = 2;
  message Inner { string service = 1; oneof rpc { int32 a = 2; } }
  reserved 3, 4 to 6;
  option (x.y) = { a: "}" b: { c: 1 } };
}

enum Kind { KIND_UNSPECIFIED = 0; KIND_PAPER = 1 [deprecated = true]; }

service BookService {
  option (google.api.default_host) = "books.example.com";

  // Gets a book. rpc Commented(A) returns (B);
  rpc GetBook(GetBookRequest) returns (Book) {
    option (google.api.http) = {
      get: "/v1/{name=shelves/*/books/*}"
      additional_bindings { get: "/v1/books/{id}" }
    };
  }
  rpc ListBooks(ListBooksRequest) returns (stream Book);
  rpc UploadBooks(stream Book) returns (UploadSummary) {}
  rpc Chat (stream .example.books.v1.Message) returns (stream Message) { option deprecated = true; };
}

service AuthorService{rpc GetAuthor(GetAuthorRequest)returns(Author);/* inline */rpc
  DeleteAuthor(DeleteAuthorRequest) returns (google.protobuf.Empty);}
"#;

#[test]
fn every_rpc_of_every_service_becomes_a_route() {
    assert_eq!(
        summary(BOOKS),
        pairs(&[
            (
                "POST /example.books.v1.BookService/GetBook",
                r"/example\.books\.v1\.BookService/GetBook"
            ),
            (
                "POST /example.books.v1.BookService/ListBooks",
                r"/example\.books\.v1\.BookService/ListBooks"
            ),
            (
                "POST /example.books.v1.BookService/UploadBooks",
                r"/example\.books\.v1\.BookService/UploadBooks"
            ),
            (
                "POST /example.books.v1.BookService/Chat",
                r"/example\.books\.v1\.BookService/Chat"
            ),
            (
                "POST /example.books.v1.AuthorService/GetAuthor",
                r"/example\.books\.v1\.AuthorService/GetAuthor"
            ),
            (
                "POST /example.books.v1.AuthorService/DeleteAuthor",
                r"/example\.books\.v1\.AuthorService/DeleteAuthor"
            ),
        ])
    );
    let re = compile_path_regex(r"/example\.books\.v1\.BookService/GetBook").expect("compiles");
    assert!(re.is_match(b"/example.books.v1.BookService/GetBook"));
    assert!(!re.is_match(b"/exampleXbooks.v1.BookService/GetBook"));
    assert!(!re.is_match(b"/example.books.v1.BookService/GetBookX"));
}

#[test]
fn without_a_package_services_are_named_alone() {
    let proto = "syntax = 'proto3';\nservice Greeter {\n  rpc SayHello (HelloRequest) returns (HelloReply) {}\n}\n";
    assert_eq!(
        summary(proto),
        pairs(&[("POST /Greeter/SayHello", "/Greeter/SayHello")])
    );
}

#[test]
fn a_package_after_the_services_still_names_them() {
    let proto = "service S { rpc A(B) returns (C); }\npackage late;\n";
    assert_eq!(summary(proto), pairs(&[("POST /late.S/A", r"/late\.S/A")]));
}

#[test]
fn stream_is_a_keyword_only_before_a_type() {
    let proto = "service S {\n rpc A(stream) returns (stream stream);\n rpc B(stream.Msg) returns (stream .stream.Msg);\n}";
    let names: Vec<_> = summary(proto).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["POST /S/A", "POST /S/B"]);
}

#[test]
fn strings_and_comments_hide_braces() {
    let proto = r#"service S {
  option (a) = "}// not a comment";
  option (b) = '/* not a comment either';
  rpc A(B) returns (C) { option (c) = { s: "{" t: 'it\'s }' }; }
  // }
  /* } */
  rpc D(E) returns (F);
}"#;
    let names: Vec<_> = summary(proto).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["POST /S/A", "POST /S/D"]);
}

#[test]
fn files_without_rpcs_or_malformed_are_refused_with_a_line() {
    for (proto, want) in [
        ("", "no service is defined"),
        (
            "syntax = \"proto3\";\nmessage M { string service = 1; }\n",
            "no service is defined",
        ),
        (
            "// service S { rpc A(B) returns (C); }\n",
            "no service is defined",
        ),
        (
            "service A {}\nservice B { option x = 1; }\n",
            "the file's services (A, B) have no rpcs",
        ),
        (
            "message M {}\n/* service S {\n",
            "line 2: a /* comment is not closed",
        ),
        ("option x = \"abc\n;", "line 1: a string is not closed"),
        (
            "\nservice S {\n  rpc A(B) returns (C);\n",
            "line 2: service S's `{` is not closed",
        ),
        (
            "service S {\n  rpc A(B) (C);\n}",
            "line 2: expected `returns` after rpc A's request type, found `(`",
        ),
        (
            "service S {\n  rpc A(B) returns (C)\n}",
            "line 3: expected `;` or `{` after rpc A's response type, found `}`",
        ),
        (
            "service S {\n  rpc A(B C) returns (D);\n}",
            "line 2: rpc A's request type is `(B C)`",
        ),
        (
            "service S {\n  rpc A(B) returns ();\n}",
            "line 2: rpc A's response type is `()`",
        ),
        (
            "service S {\n  rpc (B) returns (C);\n}",
            "line 2: expected an rpc name after `rpc`, found `(`",
        ),
        (
            "service S {\n  rpc a.b(B) returns (C);\n}",
            "line 2: \"a.b\" is not an rpc name",
        ),
        ("service 9S { }", "line 1: \"9S\" is not a service name"),
        (
            "package a;\npackage b;\nservice S { rpc A(B) returns (C); }",
            "line 2: a second package statement (the first is on line 1)",
        ),
        ("package a..b;\n", "line 1: \"a..b\" is not a package name"),
        (
            "package a\nservice S {}",
            "line 2: expected `;` after the package name, found `service`",
        ),
        ("message M { }\n}\n", "line 2: this `}` closes nothing"),
        (
            "message M {\n  string a = 1;\n",
            "line 1: a `{` in the statement starting here is not closed",
        ),
        (
            "syntax = \"proto3\"",
            "line 1: the statement starting here has no `;`",
        ),
    ] {
        let e = error(proto);
        assert!(e.starts_with(want), "{proto:?}: {e}");
    }
}
