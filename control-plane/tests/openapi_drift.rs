//! The committed OpenAPI document (`openapi/control-plane.json`) must match what the code
//! generates. To accept a change:
//!
//! ```text
//! UPDATE_OPENAPI=1 cargo test -p control-plane --test openapi_drift
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("openapi")
        .join("control-plane.json")
}

#[test]
fn openapi_drift() {
    let generated = control_plane::openapi::spec_json();
    let path = committed_path();
    if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write openapi/control-plane.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let first_diff = committed
            .lines()
            .zip(generated.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| {
                format!(
                    "first difference at line {}:\n  committed: {a}\n  generated: {b}",
                    i + 1
                )
            })
            .unwrap_or_else(|| "the documents differ in length".to_owned());
        panic!(
            "openapi/control-plane.json is out of date with the code ({first_diff}).\n\
             If the API change is intended, regenerate it with:\n\
             \n    UPDATE_OPENAPI=1 cargo test -p control-plane --test openapi_drift\n\
             \nand commit the result."
        );
    }
}

#[test]
fn every_operation_is_documented_with_errors_and_security() {
    let spec: serde_json::Value =
        serde_json::from_str(&control_plane::openapi::spec_json()).unwrap();
    assert!(spec["components"]["securitySchemes"]["bearer"].is_object());
    let paths = spec["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            // Public exactly when the permission matrix says so.
            let public = control_plane::http::permissions::lookup(
                &method.to_uppercase().parse().unwrap(),
                path,
            )
            .unwrap_or_else(|| panic!("{method} {path} is missing from the permission table"))
            .access
                == control_plane::http::permissions::Access::Public;
            assert_eq!(
                op.get("security").is_some(),
                !public,
                "{method} {path}: security declared iff authenticated"
            );
            // Neither can fail: they read no database and take no input.
            if path != "/healthz" && path != "/api/v1/meta" {
                assert!(
                    op["responses"].as_object().unwrap().len() >= 2,
                    "{method} {path} documents its errors"
                );
            }
        }
    }
    assert_eq!(operations, 74, "every route is in the document");
}
