//! The committed JSON Schema of routes.yaml is the one generated from the Rust types, and the
//! sample file validates against it.

#[test]
fn committed_schema_is_current() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_payroute"))
        .arg("schema")
        .output()
        .unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schema/routes.schema.json"
    ))
    .unwrap();
    assert_eq!(
        generated.trim(),
        committed.trim(),
        "schema/routes.schema.json is stale: run `cargo run -- schema > schema/routes.schema.json`"
    );
    let v: serde_json::Value = serde_json::from_str(&committed).unwrap();
    for key in ["channels", "rules"] {
        assert!(v["properties"].get(key).is_some(), "{key}");
    }
    assert!(committed.contains("\"cheapest\"") && committed.contains("\"weighted\""));
}
